//! Intervals for the figures of a report.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A point estimate with a 95% interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

/// The Wilson score interval of `successes` out of `trials` (a proportion, 0–1): unlike
/// the normal approximation it stays inside 0–1 and is sensible for small counts.
pub fn wilson_interval(successes: usize, trials: usize) -> Estimate {
    if trials == 0 {
        return Estimate { value: 0.0, low: 0.0, high: 1.0 };
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Estimate { value: p, low: (center - half).max(0.0), high: (center + half).min(1.0) }
}

/// The mean of `values` with a normal 95% interval (mean ± 1.96 standard errors).
pub fn mean_interval(values: &[f64]) -> Estimate {
    if values.is_empty() {
        return Estimate::default();
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return Estimate { value: mean, low: mean, high: mean };
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = Z95 * (variance / n).sqrt();
    Estimate { value: mean, low: mean - half, high: mean + half }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_hand_computation() {
        // 8 of 10: centre (0.8 + 1.92073/20) / 1.384146 = 0.647327, half-width
        // 1.959964 / 1.384146 × sqrt(0.016 + 0.0096037) = 0.226645.
        let e = wilson_interval(8, 10);
        assert!((e.value - 0.8).abs() < 1e-12);
        assert!((e.low - 0.490_162).abs() < 1e-5, "{}", e.low);
        assert!((e.high - 0.943_318).abs() < 1e-5, "{}", e.high);
        // All right or all wrong: the interval still has width, and stays within 0–1.
        let e = wilson_interval(5, 5);
        assert_eq!(e.high, 1.0);
        assert!(e.low > 0.5 && e.low < 0.6);
        assert_eq!(wilson_interval(0, 5).low, 0.0);
    }

    #[test]
    fn mean_interval_uses_the_standard_error() {
        let e = mean_interval(&[1.0, 2.0, 3.0, 4.0]);
        // sd = 1.290994, se = 0.645497.
        assert!((e.value - 2.5).abs() < 1e-12);
        assert!((e.high - 2.5 - 1.959964 * 0.645497).abs() < 1e-5);
    }
}
