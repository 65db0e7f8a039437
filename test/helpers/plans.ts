/** EXPLAIN (FORMAT JSON) plans in tests: the node shape and a walk over every node. */

export interface PlanNode {
  'Node Type': string
  'Actual Loops'?: number
  'Relation Name'?: string
  'Index Name'?: string
  'Subplan Name'?: string
  'Parent Relationship'?: string
  Plans?: PlanNode[]
}

export function * walk (node: PlanNode): Generator<PlanNode> {
  yield node
  for (const child of node.Plans ?? []) yield * walk(child)
}

/** The top plan node of an `explain (format json)` answer row. */
export function planOf (row: Record<string, unknown> | undefined): PlanNode {
  return (row?.['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]?.Plan as PlanNode
}
