//! Jittered exponential backoff for upstream reconnects (after linkerd's `exp-backoff`): the n-th delay is
//! `min(max, initial · 2ⁿ)`, then drawn uniformly from its upper half so reconnecting streams spread out.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Refuses a zero `initial` or a `max` below `initial`.
    pub fn try_new(initial: Duration, max: Duration) -> Result<Backoff, String> {
        if initial.is_zero() {
            return Err("initial backoff must be greater than zero".into());
        }
        if max < initial {
            return Err(format!("max backoff {max:?} is below initial {initial:?}"));
        }
        Ok(Backoff { initial, max })
    }

    /// The same bounds with another base (an upstream's `retry:`), never below the configured `initial` (the
    /// reconnect floor: `retry: 0` must not turn into a reconnect storm) nor above `max`.
    pub fn with_initial(self, initial: Duration) -> Backoff {
        let initial = initial.clamp(self.initial, self.max);
        Backoff {
            initial,
            max: self.max,
        }
    }

    /// The un-jittered delay before attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The jittered delay before attempt `attempt`: within `[ceiling/2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_nanos() as u64;
        half + Duration::from_nanos(if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_bad_bounds() {
        assert!(Backoff::try_new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn doubles_up_to_max() {
        let b = Backoff::try_new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let ceilings: Vec<u128> = (0..6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            b.with_initial(Duration::from_secs(5)).ceiling(0),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.with_initial(Duration::ZERO).ceiling(0),
            Duration::from_millis(100),
            "retry: 0 cannot go below the floor"
        );
        assert_eq!(
            b.with_initial(Duration::from_millis(300)).ceiling(1),
            Duration::from_millis(600)
        );
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(initial_ms in 1u64..10_000, extra_ms in 0u64..100_000, attempt in 0u32..200) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let b = Backoff::try_new(initial, max).unwrap();
            let d = b.delay(attempt);
            prop_assert!(d <= max);
            prop_assert!(d >= initial.min(max) / 2);
            prop_assert!(d >= b.ceiling(attempt) / 2);
        }
    }
}
