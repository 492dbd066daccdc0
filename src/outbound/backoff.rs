//! Retry spacing after a 5xx, a timeout or a broken connection: exponential with jitter, capped.

use std::time::Duration;

use rand::Rng;

/// The wait before attempt number `attempt + 1` (attempt counts from 1): 1 s, 2 s, 4 s, …
/// up to `max`, each scaled by a random factor in [0.5, 1.0] so that retries do not march in
/// step.
pub fn delay(attempt: u32, max: Duration) -> Duration {
    let exp = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let factor = rand::rng().random_range(0.5..=1.0);
    capped.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let d1 = delay(1, max);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d4 = delay(4, max);
            assert!(d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8));
            assert!(delay(30, max) <= max);
        }
    }
}
