//! Which worker runs how many users of which class.
//!
//! The cluster's users are the first N positions of the plan's user
//! sequence (fixed counts first, then weights: the same sequence one
//! process uses, so `fixed_count` holds cluster-wide). Positions are dealt
//! to workers in a smooth weighted round robin on their cores, so a worker
//! with twice the cores gets twice the users and every worker gets a fair
//! mix of classes. Deterministic: the same inputs give the same shares.

use swarmer_engine::dispatch::UserSequence;

/// Users per class for each worker (`workers[i]` is worker i's cores).
pub fn assign(classes: &[(u32, Option<u32>)], users: usize, workers: &[u32]) -> Vec<Vec<usize>> {
    let mut shares = vec![vec![0usize; classes.len()]; workers.len()];
    if workers.is_empty() {
        return shares;
    }
    let sequence = UserSequence::new(classes);
    let users = sequence.capacity().map_or(users, |cap| users.min(cap));
    let weights: Vec<i64> = workers.iter().map(|c| i64::from((*c).max(1))).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; workers.len()];
    for position in 0..users {
        let Some(class) = sequence.class_at(position) else { break };
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) =
            current.iter().enumerate().fold((0, i64::MIN), |acc, (i, &c)| if c > acc.1 { (i, c) } else { acc });
        current[best] -= total;
        shares[best][class] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_evenly_over_equal_workers() {
        let shares = assign(&[(1, None)], 10, &[1, 1, 1]);
        let totals: Vec<usize> = shares.iter().map(|s| s.iter().sum()).collect();
        assert_eq!(totals, [4, 3, 3]);
    }

    #[test]
    fn cores_weigh_the_split_and_classes_mix() {
        let shares = assign(&[(3, None), (1, None)], 12, &[2, 1]);
        assert_eq!(shares[0].iter().sum::<usize>(), 8);
        assert_eq!(shares[1].iter().sum::<usize>(), 4);
        assert_eq!(shares[0][0] + shares[1][0], 9, "weights hold over the cluster");
        assert!(shares[1][0] > 0 && shares[0][1] > 0, "each worker gets a mix");
    }

    #[test]
    fn fixed_counts_hold_over_the_cluster() {
        let shares = assign(&[(1, Some(1)), (1, None)], 9, &[1, 1, 1, 1]);
        let fixed: usize = shares.iter().map(|s| s[0]).sum();
        assert_eq!(fixed, 1, "one user of the fixed class in the whole cluster");
        assert_eq!(shares.iter().map(|s| s.iter().sum::<usize>()).sum::<usize>(), 9);
    }

    #[test]
    fn no_workers_no_shares() {
        assert!(assign(&[(1, None)], 5, &[]).is_empty());
    }
}
