//! The vector index over this node's replica: every observation's
//! embedding in one contiguous array, scanned exactly with a vectorisable
//! dot product. Rebuilt from the replica at start and after a snapshot
//! install; kept current from committed `MemoryAdded` / `MemoryRemoved`.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

use caxton_cluster::ReadError;

use super::embedder::{dot, DIMENSIONS};
use super::types::Viewer;
pub use crate::state::IndexedRow;
use crate::state::Queries;

/// Above this many vectors, search first scans int8-quantised copies (a
/// quarter of the memory traffic) and re-ranks the best candidates exactly.
pub const APPROXIMATE_ABOVE: usize = 20_000;
/// Candidates re-ranked exactly per result wanted.
const RERANK_FACTOR: usize = 8;

fn quantize(v: &[f32]) -> impl Iterator<Item = i8> + '_ {
    // Unit vectors: components lie in [-1, 1].
    v.iter().map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 32;
    let mut acc = [0i32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..LANES {
            acc[k] += x[k] as i32 * y[k] as i32;
        }
    }
    acc.iter().sum::<i32>() + ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| *x as i32 * *y as i32).sum::<i32>()
}

#[derive(Default)]
struct Inner {
    rows: Vec<IndexedRow>,
    vectors: Vec<f32>,
    /// int8 copies of `vectors`, for the approximate first pass.
    quantized: Vec<i8>,
    /// observation id → position, for removals.
    position: HashMap<i64, usize>,
}

impl Inner {
    fn push(&mut self, row: IndexedRow, vector: &[f32]) {
        if vector.len() != DIMENSIONS || self.position.contains_key(&row.observation_id) {
            return;
        }
        self.position.insert(row.observation_id, self.rows.len());
        self.rows.push(row);
        self.vectors.extend_from_slice(vector);
        self.quantized.extend(quantize(vector));
    }
}

#[derive(Default)]
pub struct VectorIndex {
    inner: RwLock<Inner>,
}

/// Filters applied during the scan, so isolation holds inside the index too.
pub struct Filter<'a> {
    pub viewer: &'a Viewer,
    pub scope: Option<super::types::MemoryScope>,
    pub entity_type: Option<&'a str>,
    pub min_similarity: f32,
}

impl VectorIndex {
    pub fn len(&self) -> usize {
        self.inner.read().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        *self.inner.write() = Inner::default();
    }

    pub fn insert(&self, row: IndexedRow, vector: &[f32]) {
        self.inner.write().push(row, vector);
    }

    /// Removes every observation of an entity (swap-remove keeps it compact).
    pub fn remove_entity(&self, entity_id: i64) {
        let mut g = self.inner.write();
        let mut i = 0;
        while i < g.rows.len() {
            if g.rows[i].entity_id != entity_id {
                i += 1;
                continue;
            }
            let last = g.rows.len() - 1;
            let removed = g.rows[i].observation_id;
            g.rows.swap(i, last);
            for d in 0..DIMENSIONS {
                g.vectors.swap(i * DIMENSIONS + d, last * DIMENSIONS + d);
                g.quantized.swap(i * DIMENSIONS + d, last * DIMENSIONS + d);
            }
            g.rows.pop();
            let new_len = g.vectors.len() - DIMENSIONS;
            g.vectors.truncate(new_len);
            g.quantized.truncate(new_len);
            g.position.remove(&removed);
            if i < g.rows.len() {
                let moved = g.rows[i].observation_id;
                g.position.insert(moved, i);
            }
        }
    }

    /// Best `limit` (observation row, score) pairs passing the filter:
    /// an exact scan for small collections; above `APPROXIMATE_ABOVE`, an
    /// int8 first pass over every row, then exact scores for the best
    /// `limit × 8` candidates.
    pub fn search(&self, query: &[f32], filter: &Filter<'_>, limit: usize) -> Vec<(IndexedRow, f32)> {
        let g = self.inner.read();
        let passes = |row: &IndexedRow| {
            filter.scope.is_none_or(|s| s == row.place.scope)
                && filter.entity_type.is_none_or(|t| t == row.entity_type)
                && filter.viewer.can_see(&row.place)
        };
        let exact = |i: usize| dot(query, &g.vectors[i * DIMENSIONS..(i + 1) * DIMENSIONS]);
        let best = if g.rows.len() <= APPROXIMATE_ABOVE {
            top_k(
                (0..g.rows.len()).filter(|i| passes(&g.rows[*i])).map(|i| (i, exact(i))),
                limit,
                filter.min_similarity,
            )
        } else {
            let q: Vec<i8> = quantize(query).collect();
            let rough = top_k(
                (0..g.rows.len())
                    .filter(|i| passes(&g.rows[*i]))
                    .map(|i| (i, dot_i8(&q, &g.quantized[i * DIMENSIONS..(i + 1) * DIMENSIONS]) as f32)),
                limit * RERANK_FACTOR,
                f32::MIN,
            );
            top_k(rough.into_iter().map(|(i, _)| (i, exact(i))), limit, filter.min_similarity)
        };
        best.into_iter().map(|(i, s)| (g.rows[i].clone(), s)).collect()
    }

    /// Loads every observation from the replica.
    /// (The int8 copies are derived here too; nothing extra is stored.)
    pub async fn rebuild(&self, queries: &Queries) -> Result<usize, ReadError> {
        let fresh = Arc::new(Mutex::new(Inner::default()));
        let sink = fresh.clone();
        queries.scan_observations(None, move |row, v| sink.lock().push(row, &v.0)).await?;
        let fresh = std::mem::take(&mut *fresh.lock());
        let n = fresh.rows.len();
        *self.inner.write() = fresh;
        Ok(n)
    }

    /// Adds the given observations (after a commit) from the replica.
    pub async fn add(self: &Arc<Self>, queries: &Queries, ids: Vec<i64>) -> Result<(), ReadError> {
        let index = self.clone();
        queries.scan_observations(Some(ids), move |row, v| index.insert(row, &v.0)).await?;
        Ok(())
    }
}

/// The `k` best (index, score) pairs at or above `min`, best first.
fn top_k(scored: impl Iterator<Item = (usize, f32)>, k: usize, min: f32) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, score) in scored {
        if score < min {
            continue;
        }
        if best.len() < k || score > best.last().map(|b| b.1).unwrap_or(f32::MIN) {
            let at = best.partition_point(|b| b.1 >= score);
            best.insert(at, (i, score));
            best.truncate(k);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::types::{MemoryScope, Place};

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; DIMENSIONS];
        v[i] = 1.0;
        v
    }

    #[test]
    fn search_ranks_filters_and_isolates() {
        let idx = VectorIndex::default();
        let row =
            |o, e, place: Place| IndexedRow { observation_id: o, entity_id: e, place, entity_type: "fact".into() };
        idx.insert(row(1, 1, Place::agent("alice")), &unit(0));
        idx.insert(row(2, 2, Place::agent("bob")), &unit(0));
        idx.insert(row(3, 3, Place::global()), &unit(1));
        let alice = Viewer { agent: Some("Alice".into()), workspace: None };
        let f = Filter { viewer: &alice, scope: None, entity_type: None, min_similarity: -1.0 };
        let hits = idx.search(&unit(0), &f, 10);
        assert_eq!(
            hits.iter().map(|h| h.0.observation_id).collect::<Vec<_>>(),
            vec![1, 3],
            "bob's memory is invisible to alice"
        );
        assert!(hits[0].1 > hits[1].1);
        let f = Filter { viewer: &alice, scope: Some(MemoryScope::Global), entity_type: None, min_similarity: 0.5 };
        assert_eq!(idx.search(&unit(1), &f, 10).len(), 1);
        idx.remove_entity(1);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.inner.read().quantized.len(), 2 * DIMENSIONS);
        let f = Filter { viewer: &alice, scope: None, entity_type: None, min_similarity: -1.0 };
        assert_eq!(idx.search(&unit(0), &f, 10).len(), 1);
    }
}

#[cfg(test)]
mod approximate_tests {
    use super::*;
    use crate::memory::types::Place;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_quantised_pass_finds_what_the_exact_scan_finds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let unit = |rng: &mut rand::rngs::StdRng| {
            let v: Vec<f32> = (0..DIMENSIONS).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let n = dot(&v, &v).sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let idx = VectorIndex::default();
        let mut all = Vec::new();
        for i in 0..(APPROXIMATE_ABOVE + 5_000) {
            let v = unit(&mut rng);
            idx.insert(
                IndexedRow {
                    observation_id: i as i64,
                    entity_id: i as i64,
                    place: Place::global(),
                    entity_type: "t".into(),
                },
                &v,
            );
            all.push(v);
        }
        let viewer = Viewer::default();
        let f = Filter { viewer: &viewer, scope: None, entity_type: None, min_similarity: -1.0 };
        let mut found = 0;
        for _ in 0..20 {
            let q = unit(&mut rng);
            let mut exact: Vec<(usize, f32)> = all.iter().enumerate().map(|(i, v)| (i, dot(&q, v))).collect();
            exact.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
            let truth: std::collections::HashSet<i64> = exact[..10].iter().map(|(i, _)| *i as i64).collect();
            let got = idx.search(&q, &f, 10);
            // Scores are exact (re-ranked), in order.
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
            found += got.iter().filter(|h| truth.contains(&h.0.observation_id)).count();
        }
        assert!(found as f64 / 200.0 >= 0.95, "recall@10 {}", found as f64 / 200.0);
    }
}
