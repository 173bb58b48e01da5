//! Percentiles for the summary.

/// The nearest-rank `p`th percentile (0 < p ≤ 100) of values sorted ascending: the smallest
/// value such that at least p % of the values are at or below it. `None` when there are none.
pub(super) fn nearest_rank(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p / 100 × n), in integers so that p99 of 100 values is exactly the 99th.
    let rank = (p as usize * n).div_ceil(100);
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Count, p50, p99 and maximum of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spread {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(mut values: Vec<u64>) -> Option<Spread> {
        values.sort_unstable();
        Some(Spread {
            count: values.len(),
            p50: nearest_rank(&values, 50)?,
            p99: nearest_rank(&values, 99)?,
            max: *values.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_an_observed_value() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 50), Some(50));
        assert_eq!(nearest_rank(&hundred, 99), Some(99));
        assert_eq!(nearest_rank(&hundred, 100), Some(100));
        assert_eq!(nearest_rank(&hundred, 1), Some(1));

        assert_eq!(nearest_rank(&[10, 20, 30], 50), Some(20));
        assert_eq!(nearest_rank(&[10, 20], 50), Some(10));
        assert_eq!(nearest_rank(&[10, 20], 99), Some(20));
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 99), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn spread_sorts_first() {
        let spread = Spread::of(vec![30, 10, 20, 40]).unwrap();
        assert_eq!(spread, Spread { count: 4, p50: 20, p99: 40, max: 40 });
        assert_eq!(Spread::of(Vec::new()), None);
    }
}
