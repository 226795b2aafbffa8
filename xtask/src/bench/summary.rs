//! Statistics over passes and samples: median, min–max spread, a confidence interval for the
//! median, percentiles, and the rule that decides when a noisy measurement gets more passes.

use serde::Serialize;

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median and range of one metric over the passes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median, in percent (0 for a single pass or a zero median).
    pub spread_pct: f64,
}

/// The median and min–max of the finite `values`; `None` when there is none.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let median = median(values)?;
    let finite = values.iter().copied().filter(|x| x.is_finite());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.fold(f64::NEG_INFINITY, f64::max);
    let spread_pct = if median.abs() > f64::EPSILON {
        (max - min) / median.abs() * 100.0
    } else {
        0.0
    };
    Some(Spread {
        median,
        min,
        max,
        spread_pct,
    })
}

/// A 95% confidence interval for the median of the distribution `values` were drawn from:
/// `(x(j), x(n+1-j))`, the order statistics whose ranks a Binomial(n, 1/2) keeps the median
/// between with probability at least 0.95 (distribution-free; the sign-test interval).
/// `None` for fewer than 6 finite values, where even the whole range covers less.
pub fn median_ci95(values: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // P(B <= k) for B ~ Binomial(n, 1/2), by the recurrence on C(n, k) / 2^n.
    let mut term = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut below = term; // P(B <= 0)
    if below > 0.025 {
        return None;
    }
    // The largest j with P(B <= j - 1) <= 0.025.
    let mut j = 1;
    while j < n / 2 {
        term *= (n - j) as f64 / j as f64; // now P(B = j)
        if below + term > 0.025 {
            break;
        }
        below += term;
        j += 1;
    }
    Some((v[j - 1], v[n - j]))
}

/// True when another pass should be run: some metric spreads over `limit_pct` and fewer than
/// `max_passes` passes were run.
pub fn needs_more_passes(
    spreads: &[Option<Spread>],
    done: usize,
    max_passes: usize,
    limit_pct: f64,
) -> bool {
    done < max_passes && spreads.iter().flatten().any(|s| s.spread_pct > limit_pct)
}

/// The `p`-th percentile (0..=100) of an ascending slice by the nearest-rank method.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn spread_is_range_over_median() {
        let s = spread(&[100.0, 90.0, 110.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (100.0, 90.0, 110.0));
        assert!((s.spread_pct - 20.0).abs() < 1e-9);
        assert_eq!(spread(&[5.0]).unwrap().spread_pct, 0.0);
        assert_eq!(spread(&[0.0, 0.0]).unwrap().spread_pct, 0.0);
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn median_confidence_intervals_are_the_sign_test_ranks() {
        // Ranks from the binomial tables: n = 6 → (1, 6), n = 10 → (2, 9), n = 20 → (6, 15),
        // n = 40 → (14, 27).
        let ranks = |n: usize| {
            let v: Vec<f64> = (1..=n).rev().map(|x| x as f64).collect();
            median_ci95(&v).map(|(a, b)| (a as usize, b as usize))
        };
        assert_eq!(ranks(5), None);
        assert_eq!(ranks(6), Some((1, 6)));
        assert_eq!(ranks(10), Some((2, 9)));
        assert_eq!(ranks(20), Some((6, 15)));
        assert_eq!(ranks(40), Some((14, 27)));
        assert_eq!(median_ci95(&[f64::NAN; 10]), None);
    }

    #[test]
    fn more_passes_only_when_noisy_and_allowed() {
        let noisy = spread(&[100.0, 80.0, 100.0]);
        let calm = spread(&[100.0, 99.0, 101.0]);
        assert!(needs_more_passes(&[calm, noisy], 3, 5, 10.0));
        assert!(!needs_more_passes(&[calm, noisy], 5, 5, 10.0));
        assert!(!needs_more_passes(&[calm, None], 3, 5, 10.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        assert_eq!(percentile_sorted(&[7], 99.0), Some(7));
        assert_eq!(percentile_sorted(&[], 50.0), None);
    }
}
