//! Which class the n-th user belongs to.
//!
//! Fixed-count classes come first (in the order they were defined), then the
//! weighted classes interleaved by a smooth weighted round robin: weights
//! 5:1 give `AAABAA AAABAA …`, so at every point of a ramp the mix is as
//! close to the weights as whole users allow. Because the order is fixed,
//! the first `n` positions are always the right mix for `n` users, and
//! removing the newest users first keeps the mix right while ramping down.

/// The deterministic order in which users of each class are spawned.
#[derive(Clone, Debug)]
pub struct UserSequence {
    fixed: Vec<usize>,
    cycle: Vec<usize>,
}

impl UserSequence {
    /// `classes[i] = (weight, fixed_count)`.
    pub fn new(classes: &[(u32, Option<u32>)]) -> Self {
        let mut fixed = Vec::new();
        for (i, (_, count)) in classes.iter().enumerate() {
            if let Some(count) = count {
                fixed.extend(std::iter::repeat_n(i, *count as usize));
            }
        }
        let weighted: Vec<(usize, u64)> = classes
            .iter()
            .enumerate()
            .filter(|(_, (w, fixed))| fixed.is_none() && *w > 0)
            .map(|(i, (w, _))| (i, *w as u64))
            .collect();
        let divisor = weighted.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
        let weighted: Vec<(usize, u64)> = weighted.into_iter().map(|(i, w)| (i, w / divisor)).collect();
        let total: u64 = weighted.iter().map(|(_, w)| w).sum();
        let mut current: Vec<i64> = vec![0; weighted.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, (_, w)) in current.iter_mut().zip(&weighted) {
                *c += *w as i64;
            }
            // Highest current weight wins; ties go to the class defined first.
            let (best, _) =
                current.iter().enumerate().fold((0, i64::MIN), |acc, (j, &c)| if c > acc.1 { (j, c) } else { acc });
            current[best] -= total as i64;
            cycle.push(weighted[best].0);
        }
        Self { fixed, cycle }
    }

    /// The class index of the user at `position` (0-based), or `None` when
    /// only fixed-count classes exist and all of them are placed.
    pub fn class_at(&self, position: usize) -> Option<usize> {
        if position < self.fixed.len() {
            return Some(self.fixed[position]);
        }
        if self.cycle.is_empty() {
            return None;
        }
        Some(self.cycle[(position - self.fixed.len()) % self.cycle.len()])
    }

    /// The most users this sequence can place (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.cycle.is_empty().then_some(self.fixed.len())
    }

    /// How many users of each of `classes` classes the first `n` positions hold.
    pub fn counts(&self, n: usize, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for p in 0..n {
            match self.class_at(p) {
                Some(c) => counts[c] += 1,
                None => break,
            }
        }
        counts
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(seq: &UserSequence, n: usize) -> String {
        (0..n).filter_map(|p| seq.class_at(p)).map(|c| (b'A' + c as u8) as char).collect()
    }

    #[test]
    fn weights_five_to_one_interleave_deterministically() {
        let seq = UserSequence::new(&[(5, None), (1, None)]);
        assert_eq!(letters(&seq, 12), "AAABAAAAABAA");
    }

    #[test]
    fn fixed_count_users_are_placed_first() {
        let seq = UserSequence::new(&[(3, None), (1, Some(2)), (1, None)]);
        assert_eq!(letters(&seq, 10), "BBAACAAACA");
    }

    #[test]
    fn only_fixed_classes_cap_the_user_count() {
        let seq = UserSequence::new(&[(1, Some(2)), (1, Some(1))]);
        assert_eq!(letters(&seq, 10), "AAB");
        assert_eq!(seq.capacity(), Some(3));
    }

    #[test]
    fn every_prefix_is_close_to_the_weights() {
        let seq = UserSequence::new(&[(3, None), (2, None), (1, None)]);
        for n in 1..200 {
            let counts = seq.counts(n, 3);
            for (c, w) in counts.iter().zip([3.0, 2.0, 1.0]) {
                let ideal = n as f64 * w / 6.0;
                assert!((*c as f64 - ideal).abs() <= 1.0, "n={n} counts={counts:?}");
            }
        }
    }

    #[test]
    fn common_factors_do_not_change_the_order() {
        let a = UserSequence::new(&[(10, None), (2, None)]);
        let b = UserSequence::new(&[(5, None), (1, None)]);
        assert_eq!(letters(&a, 24), letters(&b, 24));
    }
}
