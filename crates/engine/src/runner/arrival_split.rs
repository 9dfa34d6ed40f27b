//! How a runner splits an arrival-rate test over its shards: each shard
//! takes every `stride`-th iteration from its own slot, and a share of the
//! pool's maximum. Only as many shards as the pool has users take part,
//! so that no shard is left with iterations and no user to run them.

use std::time::{Duration, Instant};

use crate::arrival::ArrivalRate;
use crate::arrival_pool::ArrivalShare;
use crate::test_settings::ArrivalSlice;

/// How many of `shards` take part in `rate` (one at least).
pub fn shards_taking_part(rate: &ArrivalRate, shards: usize) -> usize {
    shards.min(rate.max_users).max(1)
}

/// The most users shard `i` of `shards` may have in the pool (0 for a
/// shard that takes no part): the maximum shared as evenly as it goes.
pub fn shard_max_users(rate: &ArrivalRate, shards: usize, i: usize) -> usize {
    let used = shards_taking_part(rate, shards);
    if i < used { rate.max_users / used + usize::from(i < rate.max_users % used) } else { 0 }
}

/// Each shard's share (`None`: the shard takes no part), for a runner
/// whose shards take `slice` of the test's iterations (all of them when
/// `None`). `weights` picks the classes of users the pools grow by.
pub fn shard_shares(
    rate: &ArrivalRate,
    shards: usize,
    slice: Option<ArrivalSlice>,
    weights: &[u32],
    began: Instant,
    host: Option<String>,
) -> Vec<Option<Box<ArrivalShare>>> {
    let used = shards_taking_part(rate, shards);
    let slice = slice.unwrap_or(ArrivalSlice { first: 0, total: used as u64, began_ago: Duration::ZERO });
    let began = began.checked_sub(slice.began_ago).unwrap_or(began);
    (0..shards)
        .map(|i| {
            (i < used).then(|| {
                let max_users = shard_max_users(rate, shards, i);
                Box::new(ArrivalShare {
                    rate: rate.clone(),
                    stride: slice.total.max(1),
                    offset: slice.first + i as u64,
                    max_users,
                    class_weights: weights.to_vec(),
                    began,
                    host: host.clone(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_iteration_has_one_shard_and_the_maximum_is_shared() {
        let rate = ArrivalRate::constant(100.0, 2, 7);
        let shares = shard_shares(&rate, 4, None, &[1], Instant::now(), None);
        let shares: Vec<&ArrivalShare> = shares.iter().map(|s| s.as_deref().unwrap()).collect();
        assert_eq!(shares.iter().map(|s| s.offset).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(shares.iter().all(|s| s.stride == 4));
        assert_eq!(shares.iter().map(|s| s.max_users).sum::<usize>(), 7);
    }

    #[test]
    fn a_small_pool_uses_as_many_shards_as_it_has_users() {
        let rate = ArrivalRate::constant(100.0, 1, 2);
        let shares = shard_shares(
            &rate,
            4,
            Some(ArrivalSlice { first: 5, total: 9, began_ago: Duration::ZERO }),
            &[1],
            Instant::now(),
            None,
        );
        assert_eq!(shares.iter().filter(|s| s.is_some()).count(), 2);
        let first = shares[0].as_deref().unwrap();
        assert_eq!((first.offset, first.stride, first.max_users), (5, 9, 1));
    }
}
