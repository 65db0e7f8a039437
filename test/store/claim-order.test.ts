/**
 * Claimed rows come back from RETURNING in no order; the store puts them in claim order (highest
 * priority, then oldest) by the timestamps as they arrive, to the microsecond.
 */
import t from 'tap'
import { inClaimOrder } from '../../src/store/statements/claim.js'

t.test('tasks added within one millisecond keep their order (timestamps as text)', async (t) => {
  const rows = [
    { id: 'c', priority: 0, added_at: '2026-12-04 15:19:41.037900+00' },
    { id: 'b', priority: 0, added_at: '2026-12-04 15:19:41.0372+00' },
    { id: 'a', priority: 0, added_at: '2026-12-04 15:19:41.037123+00' },
    { id: 'whole', priority: 0, added_at: '2026-12-04 15:19:41+00' },
    { id: 'urgent', priority: 5, added_at: '2026-12-04 15:19:42+00' }
  ]
  t.same(inClaimOrder(rows).map(r => r.id), ['urgent', 'whole', 'a', 'b', 'c'])
})

t.test('timestamps as Dates (PGlite) are ordered too', async (t) => {
  const rows = [
    { id: 'later', priority: 0, added_at: new Date('2026-12-04T15:19:41.500Z') },
    { id: 'earlier', priority: 0, added_at: new Date('2026-12-04T15:19:41.100Z') }
  ]
  t.same(inClaimOrder(rows).map(r => r.id), ['earlier', 'later'])
})
