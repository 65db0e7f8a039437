/**
 * How one setting is declared: its variable, what it accepts, its default, its meaning, and how its
 * parsed value becomes a `Config` field. The table in settings.ts is made of these; the parser,
 * the `Config` type, `.env.example` and the README's table are all read off it.
 */
import { Type, type TSchema } from 'typebox'

/** What a variable accepts, as the docs show it (and the request-bound test reads it). */
export type Kind =
  | { readonly type: 'int', readonly default: number, readonly minimum: number, readonly maximum: number }
  | { readonly type: 'bool', readonly default: boolean }
  | { readonly type: 'enum', readonly values: readonly string[], readonly default: string }
  | { readonly type: 'string', readonly default: string }
  | { readonly type: 'optional string' }
  | { readonly type: 'optional bool' }

/** The parsed values of a whole table, by variable name (after defaults and conversion). */
export type RawValues = Readonly<Record<string, unknown>>

export interface Setting<V> {
  /** The environment variable (and config-file key). */
  readonly env: string
  /** Variables read, in order, when `env` is unset. */
  readonly aliases: readonly string[]
  readonly kind: Kind
  readonly description: string
  /** The default as the docs show it when it is derived rather than a value. */
  readonly defaultText?: string
  /** A sample value `.env.example` shows, commented out, for a setting unset by default. */
  readonly example?: string
  /** Turns a config-file value of another shape (a map) into the environment's text. */
  readonly fromFile?: (value: unknown) => unknown
  /** The TypeBox schema the raw value is converted and validated with. */
  readonly schema: TSchema
  /** The parsed value → the `Config` field; throws `InvalidValue` saying which rule it broke. */
  readonly read: (value: unknown, raw: RawValues) => V
}

/** An int setting keeps its numbers typed: request schemas and tests read its default and bounds. */
export type IntSetting = Setting<number> & { readonly kind: Extract<Kind, { type: 'int' }> }

/** A value that passed its schema but breaks the setting's own rule; the loader names the variable. */
export class InvalidValue extends Error {}

export interface Group {
  /** The heading of the group in `.env.example` and the README. */
  readonly title: string
  readonly settings: Readonly<Record<string, Setting<unknown>>>
}

export type Table = Readonly<Record<string, Group>>

/** The configuration a table describes: one readonly field per setting, in its group. */
export type ConfigOf<T extends Table> = {
  readonly [G in keyof T]: {
    readonly [K in keyof T[G]['settings']]: T[G]['settings'][K] extends Setting<infer V> ? V : never
  }
}

export const group = <S extends Group['settings']>(title: string, settings: S) => ({ title, settings })

interface Doc {
  readonly description: string
  readonly defaultText?: string
  readonly example?: string
  readonly aliases?: readonly string[]
  readonly fromFile?: (value: unknown) => unknown
}

const doc = (d: Doc | string): Doc => typeof d === 'string' ? { description: d } : d

function declare<V> (env: string, kind: Kind, schema: TSchema, d: Doc, read: (value: unknown, raw: RawValues) => V): Setting<V> {
  const { aliases = [], ...rest } = d
  return { env, aliases, kind, schema, read, ...rest }
}

export function int (env: string, def: number, minimum: number, maximum: number, d: Doc | string): IntSetting {
  const { description } = doc(d)
  const kind = { type: 'int', default: def, minimum, maximum } as const
  return { ...declare(env, kind, Type.Integer({ default: def, minimum, maximum, description }), doc(d), v => v as number), kind }
}

export function bool (env: string, def: boolean, d: Doc | string): Setting<boolean> {
  return declare(env, { type: 'bool', default: def }, Type.Boolean({ default: def, description: doc(d).description }), doc(d), v => v as boolean)
}

export function oneOf<const V extends string> (env: string, values: readonly V[], def: V, d: Doc | string): Setting<V> {
  return declare(env, { type: 'enum', values, default: def }, Type.Enum(values as V[], { default: def, description: doc(d).description }), doc(d), v => v as V)
}

export function text (env: string, def: string, d: Doc | string, minLength = 1): Setting<string> {
  return declare(env, { type: 'string', default: def }, Type.String({ default: def, minLength, description: doc(d).description }), doc(d), v => v as string)
}

/** A string that may be unset; `minLength: 0` lets a config file give "" (for a rule to refuse). */
export function optionalText (env: string, d: Doc | string, minLength = 1): Setting<string | undefined> {
  const schema = Type.Optional(Type.String({ minLength, description: doc(d).description }))
  return declare(env, { type: 'optional string' }, schema, doc(d), v => v as string | undefined)
}

export function optionalBool (env: string, d: Doc | string): Setting<boolean | undefined> {
  const schema = Type.Optional(Type.Boolean({ description: doc(d).description }))
  return declare(env, { type: 'optional bool' }, schema, doc(d), v => v as boolean | undefined)
}

/** The same setting, its value turned into another (checked, split, derived from others). */
export function refine<A, V> (setting: Setting<A>, then: (value: A, raw: RawValues) => V): Setting<V> {
  return { ...setting, read: (value, raw) => then(setting.read(value, raw), raw) }
}

/** Comma-separated entries, trimmed; empty entries are dropped. */
export const entries = (value: string): readonly string[] => value.split(',').map(s => s.trim()).filter(s => s.length > 0)

/** The raw value of a setting: its own variable, else its aliases in order. */
export function rawValue (setting: Setting<unknown>, raw: RawValues): unknown {
  const source = sourceOf(setting, raw)
  return source === undefined ? undefined : raw[source]
}

/** The variable that supplied a setting's value, or undefined when none is set. */
export function sourceOf (setting: Setting<unknown>, raw: RawValues): string | undefined {
  return [setting.env, ...setting.aliases].find(name => raw[name] !== undefined)
}

/** Every setting of a table, with its group and field names, in table order. */
export function settingsOf (table: Table): Array<{ group: string, field: string, setting: Setting<unknown> }> {
  return Object.entries(table).flatMap(([group, { settings }]) =>
    Object.entries(settings).map(([field, setting]) => ({ group, field, setting })))
}

/** Every variable a table reads (aliases included). */
export function variablesOf (table: Table): string[] {
  return settingsOf(table).flatMap(({ setting }) => [setting.env, ...setting.aliases])
}
