//! How a master splits an arrival-rate test over its workers: each worker
//! gets a share of the pool's maximum (in proportion to its cores, never
//! below the pre-allocated users it was dealt) and a slice of the
//! iterations, one slot per shard taking part, so that the workers'
//! shards together take every iteration exactly once.

use std::time::Duration;

use swarmer_engine::{ArrivalRate, ArrivalSlice, shards_taking_part};

use crate::assign::apportion;

/// One worker's part of an arrival-rate test.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerArrival {
    /// The rate with this worker's pool (pre-allocated and maximum users).
    pub rate: ArrivalRate,
    /// The iterations its shards take.
    pub slice: ArrivalSlice,
}

/// Each worker's part (`None`: it takes none), for workers with `cores`
/// shards that were dealt `pre_allocated` users each.
pub fn worker_parts(
    rate: &ArrivalRate,
    cores: &[u32],
    pre_allocated: &[usize],
    began_ago: Duration,
) -> Vec<Option<WorkerArrival>> {
    let maxima: Vec<usize> =
        apportion(rate.max_users, cores).into_iter().zip(pre_allocated).map(|(max, pre)| max.max(*pre)).collect();
    let slots: Vec<usize> = maxima
        .iter()
        .zip(cores)
        .map(|(&max, &cores)| {
            if max == 0 {
                return 0;
            }
            let part = ArrivalRate { max_users: max, ..rate.clone() };
            shards_taking_part(&part, cores.max(1) as usize)
        })
        .collect();
    let total: u64 = slots.iter().map(|&s| s as u64).sum();
    let mut first = 0u64;
    maxima
        .iter()
        .zip(pre_allocated)
        .zip(slots)
        .map(|((&max, &pre), slots)| {
            let part = (slots > 0).then(|| WorkerArrival {
                rate: ArrivalRate { pre_allocated: pre, max_users: max, ..rate.clone() },
                slice: ArrivalSlice { first, total, began_ago },
            });
            first += slots as u64;
            part
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_every_slot_once_in_proportion_to_their_cores() {
        let rate = ArrivalRate::constant(1000.0, 3, 30);
        let parts = worker_parts(&rate, &[2, 1, 3], &[1, 1, 1], Duration::ZERO);
        let parts: Vec<&WorkerArrival> = parts.iter().map(|p| p.as_ref().unwrap()).collect();
        assert_eq!(parts.iter().map(|p| p.rate.max_users).collect::<Vec<_>>(), [10, 5, 15]);
        assert_eq!(parts.iter().map(|p| p.slice.first).collect::<Vec<_>>(), [0, 2, 3]);
        assert!(parts.iter().all(|p| p.slice.total == 6));
        assert_eq!(parts[0].rate.start_rate, 1000.0, "the rate is the whole test's");
    }

    #[test]
    fn a_pool_smaller_than_the_cluster_leaves_workers_out() {
        let rate = ArrivalRate::constant(10.0, 1, 1);
        let parts = worker_parts(&rate, &[4, 4], &[1, 0], Duration::ZERO);
        assert_eq!(parts[0].as_ref().unwrap().slice, ArrivalSlice { first: 0, total: 1, began_ago: Duration::ZERO });
        assert!(parts[1].is_none());
    }
}
