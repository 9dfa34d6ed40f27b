//! Which worker runs how many users of which class.
//!
//! 1. The cluster's users are the first N positions of the plan's user
//!    sequence (fixed counts first, then weights: the sequence one process
//!    uses, so `fixed_count` and the weights hold cluster-wide). That gives
//!    each class's total.
//! 2. Each worker's total is in proportion to its cores (largest
//!    remainders), so a worker with twice the cores runs twice the users.
//! 3. Each worker's mix follows the plan's: a class's users are dealt to
//!    the workers furthest below their fair part of it (class total ×
//!    worker total / N), within each worker's total.
//!
//! A worker whose memory guard shed users has a cap: it is dealt at most
//! that many, and the rest go to the others in proportion to their cores
//! (fewer users run in all only when every worker is capped).
//!
//! On a change (a new user count, a worker joining or lost) the previous
//! shares are kept as far as they fit, and only what no longer fits moves
//! (a worker stops its surplus newest first): users are not restarted
//! elsewhere for nothing. Deterministic: the same inputs give the same
//! shares.

use swarmer_engine::dispatch::UserSequence;

/// Users per class for each worker (`workers[i]` is worker i's cores).
pub fn assign(classes: &[(u32, Option<u32>)], users: usize, workers: &[u32]) -> Vec<Vec<usize>> {
    assign_keeping(classes, users, workers, &[], &[])
}

/// [`assign`], keeping as much of `previous[i]` (worker i's current share;
/// missing or empty for a worker that has none) as fits, and giving worker
/// i at most `caps[i]` users (missing or `None`: no cap).
pub fn assign_keeping(
    classes: &[(u32, Option<u32>)],
    users: usize,
    workers: &[u32],
    previous: &[Vec<usize>],
    caps: &[Option<usize>],
) -> Vec<Vec<usize>> {
    let mut shares = vec![vec![0usize; classes.len()]; workers.len()];
    if workers.is_empty() || classes.is_empty() {
        return shares;
    }
    let sequence = UserSequence::new(classes);
    let users = sequence.capacity().map_or(users, |cap| users.min(cap));
    let cap_of = |w: usize| caps.get(w).copied().flatten();
    // Every worker capped: no more than their caps run.
    let room: Option<usize> = (0..workers.len()).map(cap_of).sum();
    let users = room.map_or(users, |room| users.min(room));
    let mut class_totals = vec![0usize; classes.len()];
    for position in 0..users {
        let Some(class) = sequence.class_at(position) else { break };
        class_totals[class] += 1;
    }
    let users: usize = class_totals.iter().sum();
    if users == 0 {
        return shares;
    }
    let worker_totals = apportion_capped(users, workers, &(0..workers.len()).map(cap_of).collect::<Vec<_>>());
    // The fair part of class c on worker w.
    let fair = |w: usize, c: usize| class_totals[c] as f64 * worker_totals[w] as f64 / users as f64;

    // Keep what fits of the previous shares: no worker above its total, no
    // class above its total; the cells furthest above fair give way first.
    for (w, share) in shares.iter_mut().enumerate() {
        if let Some(before) = previous.get(w).filter(|p| p.len() == classes.len()) {
            share.copy_from_slice(before);
        }
    }
    for w in 0..workers.len() {
        while shares[w].iter().sum::<usize>() > worker_totals[w] {
            let c = most_above_fair((0..classes.len()).map(|c| (c, shares[w][c], fair(w, c))));
            shares[w][c] -= 1;
        }
    }
    for (c, &total) in class_totals.iter().enumerate() {
        while shares.iter().map(|s| s[c]).sum::<usize>() > total {
            let w = most_above_fair((0..workers.len()).map(|w| (w, shares[w][c], fair(w, c))));
            shares[w][c] -= 1;
        }
    }

    // Deal what is left: each user of a class to the worker with room that
    // is furthest below its fair part of that class.
    for (c, &total) in class_totals.iter().enumerate() {
        let mut missing = total - shares.iter().map(|s| s[c]).sum::<usize>();
        while missing > 0 {
            let room = (0..workers.len()).filter(|&w| shares[w].iter().sum::<usize>() < worker_totals[w]);
            let w = room
                .map(|w| (w, fair(w, c) - shares[w][c] as f64))
                .fold(None, |best: Option<(usize, f64)>, (w, deficit)| match best {
                    Some((_, d)) if d >= deficit => best,
                    _ => Some((w, deficit)),
                })
                .map(|(w, _)| w)
                .expect("the workers' totals add up to the classes' totals");
            shares[w][c] += 1;
            missing -= 1;
        }
    }
    shares
}

/// `users` split over workers in proportion to their cores, the rest by
/// largest remainder (ties to the first).
pub(crate) fn apportion(users: usize, workers: &[u32]) -> Vec<usize> {
    let cores: Vec<u64> = workers.iter().map(|c| u64::from((*c).max(1))).collect();
    let total: u64 = cores.iter().sum();
    let users = users as u64;
    let mut totals: Vec<usize> = cores.iter().map(|c| (users * c / total) as usize).collect();
    let mut left = users as usize - totals.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..workers.len()).collect();
    order.sort_by_key(|&w| (std::cmp::Reverse(users * cores[w] % total), w));
    for w in order {
        if left == 0 {
            break;
        }
        totals[w] += 1;
        left -= 1;
    }
    totals
}

/// [`apportion`], no worker above its cap: a capped worker whose part
/// would pass its cap gets its cap, and the rest is apportioned again over
/// the others. `users` must fit (some worker uncapped, or the caps' sum).
fn apportion_capped(users: usize, workers: &[u32], caps: &[Option<usize>]) -> Vec<usize> {
    let mut totals = vec![0usize; workers.len()];
    let mut open: Vec<usize> = (0..workers.len()).collect();
    let mut left = users;
    while !open.is_empty() {
        let cores: Vec<u32> = open.iter().map(|&w| workers[w]).collect();
        let parts = apportion(left, &cores);
        let over: Vec<usize> = open
            .iter()
            .zip(&parts)
            .filter(|&(&w, &part)| caps[w].is_some_and(|cap| part > cap))
            .map(|(&w, _)| w)
            .collect();
        if over.is_empty() {
            for (&w, part) in open.iter().zip(parts) {
                totals[w] = part;
            }
            break;
        }
        for w in over {
            let cap = caps[w].unwrap_or_default();
            totals[w] = cap;
            left -= cap;
            open.retain(|&o| o != w);
        }
    }
    totals
}

/// Of `(index, count, fair)` cells with a count above zero, the index of the
/// one furthest above its fair part (ties to the last).
fn most_above_fair(cells: impl Iterator<Item = (usize, usize, f64)>) -> usize {
    cells
        .filter(|(_, n, _)| *n > 0)
        .fold(None, |best: Option<(usize, f64)>, (i, n, fair)| {
            let over = n as f64 - fair;
            match best {
                Some((_, b)) if b > over => best,
                _ => Some((i, over)),
            }
        })
        .map(|(i, _)| i)
        .expect("a total above its bound has a cell above zero")
}

/// Each worker's spawn rate for a move from `previous` to `shares`, so the
/// cluster as a whole starts (and stops) users at `rate`: a worker's rate is
/// in proportion to the users it starts or stops. When users move between
/// workers (one joined, one was lost), the starts on one side and the stops
/// on the other take the same time, and the count in between stays close to
/// the target. A fresh start gives each worker `rate` × its share / N.
pub fn spawn_rates(rate: f64, previous: &[Vec<usize>], shares: &[Vec<usize>]) -> Vec<f64> {
    let deltas: Vec<(usize, usize)> = shares
        .iter()
        .enumerate()
        .map(|(w, share)| {
            let before = previous.get(w).map(Vec::as_slice).unwrap_or_default();
            share.iter().enumerate().fold((0, 0), |(up, down), (c, now)| {
                let was = before.get(c).copied().unwrap_or(0);
                (up + now.saturating_sub(was), down + was.saturating_sub(*now))
            })
        })
        .collect();
    let ups: usize = deltas.iter().map(|(up, _)| up).sum();
    let downs: usize = deltas.iter().map(|(_, down)| down).sum();
    let most = ups.max(downs);
    deltas
        .iter()
        .map(|(up, down)| if most == 0 { rate } else { (rate * (up + down) as f64 / most as f64).max(0.01) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(shares: &[Vec<usize>]) -> Vec<usize> {
        shares.iter().map(|s| s.iter().sum()).collect()
    }

    fn class_total(shares: &[Vec<usize>], c: usize) -> usize {
        shares.iter().map(|s| s[c]).sum()
    }

    #[test]
    fn a_fresh_start_splits_the_rate_by_share() {
        let shares = vec![vec![6, 2], vec![3, 1]];
        assert_eq!(spawn_rates(12.0, &[], &shares), [8.0, 4.0]);
    }

    #[test]
    fn users_moving_to_a_newcomer_start_and_stop_at_the_same_pace() {
        // 30 users over 2 workers; a third joins and takes 10, 5 from each.
        let previous = vec![vec![8, 7], vec![7, 8], vec![0, 0]];
        let shares = vec![vec![5, 5], vec![5, 5], vec![5, 5]];
        let rates = spawn_rates(100.0, &previous, &shares);
        // The newcomer starts 10 at the whole rate; each of the others stops
        // 5 at half of it: both sides take 100 ms.
        assert_eq!(rates, [50.0, 50.0, 100.0]);
        // A worker with nothing to change gets a token rate; one that stops
        // a user of one class and starts one of another does both at twice
        // the rate, so the start comes as soon as at the whole rate.
        let still = spawn_rates(100.0, &shares, &[vec![5, 5], vec![5, 5], vec![4, 6]]);
        assert_eq!(still, [0.01, 0.01, 200.0]);
    }

    #[test]
    fn users_split_evenly_over_equal_workers() {
        let shares = assign(&[(1, None)], 10, &[1, 1, 1]);
        assert_eq!(totals(&shares), [4, 3, 3]);
    }

    #[test]
    fn cores_weigh_the_split_and_classes_mix() {
        let shares = assign(&[(3, None), (1, None)], 12, &[2, 1]);
        assert_eq!(totals(&shares), [8, 4]);
        assert_eq!(class_total(&shares, 0), 9, "weights hold over the cluster");
        assert_eq!(shares, [[6, 2], [3, 1]], "each worker runs the plan's mix");
    }

    #[test]
    fn two_equal_classes_over_two_workers_give_each_worker_both() {
        // Dealt round robin over the sequence A, B, A, B, each worker got
        // one class only.
        let shares = assign(&[(1, None), (1, None)], 4, &[1, 1]);
        assert_eq!(shares, [[1, 1], [1, 1]]);
    }

    #[test]
    fn fixed_counts_hold_over_the_cluster() {
        let shares = assign(&[(1, Some(1)), (1, None)], 9, &[1, 1, 1, 1]);
        assert_eq!(class_total(&shares, 0), 1, "one user of the fixed class in the whole cluster");
        assert_eq!(totals(&shares).iter().sum::<usize>(), 9);
    }

    #[test]
    fn a_capped_worker_keeps_what_fits_and_the_others_take_the_rest() {
        let classes = [(1, None), (1, None)];
        let before = assign(&classes, 30, &[1, 1, 1]);
        // The first shed users under its memory limit: it runs at most 4.
        let caps = [Some(4), None, None];
        let after = assign_keeping(&classes, 30, &[1, 1, 1], &before, &caps);
        assert_eq!(totals(&after), [4, 13, 13], "its users move to the workers with room");
        assert_eq!(class_total(&after, 0) + class_total(&after, 1), 30);
        // Every worker capped: what their caps allow, no more.
        let all = assign_keeping(&classes, 30, &[1, 1, 1], &after, &[Some(4), Some(6), Some(5)]);
        assert_eq!(totals(&all), [4, 6, 5]);
        // Caps count users, not cores: a capped big worker gives way too.
        let cored = assign_keeping(&classes, 12, &[4, 1, 1], &[], &[Some(2), None, None]);
        assert_eq!(totals(&cored), [2, 5, 5]);
    }

    #[test]
    fn a_lost_worker_moves_only_its_users() {
        let before = assign(&[(1, None), (1, None)], 30, &[1, 1, 1]);
        assert_eq!(before, [[5, 5], [5, 5], [5, 5]]);
        // The third is lost: the two others keep all they run and take its users.
        let after = assign_keeping(&[(1, None), (1, None)], 30, &[1, 1], &before[..2], &[]);
        assert_eq!(after, [[8, 7], [7, 8]]);
        for (b, a) in before.iter().zip(&after) {
            assert!(b.iter().zip(a).all(|(b, a)| a >= b), "nobody stops: {before:?} -> {after:?}");
        }
        // It comes back: the two give up only their surplus.
        let back =
            assign_keeping(&[(1, None), (1, None)], 30, &[1, 1, 1], &[after[0].clone(), after[1].clone(), vec![]], &[]);
        assert_eq!(totals(&back), [10, 10, 10]);
        assert_eq!((class_total(&back, 0), class_total(&back, 1)), (15, 15));
        for (a, b) in after.iter().zip(&back) {
            assert!(a.iter().zip(b).all(|(a, b)| b <= a), "nobody starts on the old two: {after:?} -> {back:?}");
        }
    }

    #[test]
    fn fewer_users_stop_only_the_surplus() {
        let before = assign(&[(2, None), (1, None)], 30, &[1, 1]);
        let after = assign_keeping(&[(2, None), (1, None)], 15, &[1, 1], &before, &[]);
        assert_eq!(totals(&after).iter().sum::<usize>(), 15);
        assert_eq!((class_total(&after, 0), class_total(&after, 1)), (10, 5));
        for (b, a) in before.iter().zip(&after) {
            assert!(b.iter().zip(a).all(|(b, a)| a <= b), "nobody starts: {before:?} -> {after:?}");
        }
    }

    #[test]
    fn no_workers_no_shares() {
        assert!(assign(&[(1, None)], 5, &[]).is_empty());
    }
}
