//! The learning rate at each step: linear warm-up, then cosine or linear decay to zero, or
//! constant.

/// The decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Half a cosine from the peak to zero.
    Cosine,
    /// A straight line from the peak to zero.
    Linear,
    /// The peak throughout.
    Constant,
}

/// A learning-rate schedule over a planned number of optimizer steps.
#[derive(Debug, Clone, Copy)]
pub struct LearningRateSchedule {
    /// The rate after warm-up.
    pub peak: f32,
    /// Steps rising linearly from peak/warmup to the peak.
    pub warmup_steps: u64,
    /// Steps planned in total.
    pub total_steps: u64,
    /// Decay after warm-up.
    pub schedule: Schedule,
}

impl LearningRateSchedule {
    /// The rate for step `step` (0-based). Never zero, even for a tiny peak over a long
    /// warm-up: llama.cpp's optimizer aborts on that.
    pub fn at(&self, step: u64) -> f32 {
        let floor = (self.peak * 1e-3).max(f32::MIN_POSITIVE);
        if step < self.warmup_steps {
            return (self.peak * (step + 1) as f32 / self.warmup_steps as f32).max(f32::MIN_POSITIVE);
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let rate = match self.schedule {
            Schedule::Constant => self.peak as f64,
            Schedule::Linear => self.peak as f64 * (1.0 - progress),
            Schedule::Cosine => self.peak as f64 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        (rate as f32).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let s = LearningRateSchedule {
            peak: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            schedule: Schedule::Cosine,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-9);
        assert!((s.at(9) - 1e-3).abs() < 1e-9);
        assert!((s.at(10) - 1e-3).abs() < 1e-9);
        assert!((s.at(60) - 5e-4).abs() < 1e-6, "half-way down the cosine: {}", s.at(60));
        assert!(s.at(109) < 1e-5 && s.at(109) > 0.0);
        let linear = LearningRateSchedule { schedule: Schedule::Linear, ..s };
        assert!((linear.at(35) - 7.5e-4).abs() < 1e-6, "{}", linear.at(35));
        let constant = LearningRateSchedule { schedule: Schedule::Constant, ..s };
        assert_eq!(constant.at(100), 1e-3);
        let tiny = LearningRateSchedule { peak: 1e-38, warmup_steps: u64::MAX, ..s };
        assert!(tiny.at(0) > 0.0 && tiny.at(u64::MAX - 1) > 0.0, "underflow stays above zero");
    }
}
