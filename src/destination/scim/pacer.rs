//! How many list pages to have in flight. Starts at one; doubles while the pages per
//! second measurably rise (a service that scales); settles back on the best window when
//! they do not (a single-threaded service only gets slower with more requests at once);
//! halves on 429/5xx or when throughput falls well below what the window gave before.
//! A wider window is tried only while enough pages remain for it to pay off: a probe on a
//! single-threaded service costs its contention, and on a short list no later gain repays
//! that.

use std::time::{Duration, Instant};

/// A window must beat the previous one by this factor to be kept.
const GAIN: f64 = 1.2;
/// Settled throughput below this share of the best measured means the service slowed.
const SLOWDOWN: f64 = 0.6;
/// A wider window is tried only when the pages left are at least this many times the
/// pages its measurement takes.
const PAYOFF: usize = 4;

#[derive(Debug)]
pub(super) struct Pacer {
    window: usize,
    max: usize,
    best: usize,
    best_rate: f64,
    probing: bool,
    epoch_start: Instant,
    epoch_pages: usize,
    epoch_throttled: u32,
}

impl Pacer {
    pub(super) fn new(max: usize, now: Instant, throttled: u32) -> Self {
        Pacer {
            window: 1,
            max: max.max(1),
            best: 1,
            best_rate: 0.0,
            probing: max > 1,
            epoch_start: now,
            epoch_pages: 0,
            epoch_throttled: throttled,
        }
    }

    /// Pages to keep in flight now.
    pub(super) fn window(&self) -> usize {
        self.window
    }

    /// Pages measured per window before deciding.
    fn epoch_len(window: usize) -> usize {
        (2 * window).max(3)
    }

    /// One page finished at `now`; `throttled` counts 429/5xx answers so far; `remaining`
    /// is how many pages are still to be requested, when the service said its total.
    pub(super) fn page_done(&mut self, now: Instant, throttled: u32, remaining: Option<usize>) {
        self.epoch_pages += 1;
        if throttled > self.epoch_throttled {
            self.window = (self.window / 2).max(1);
            self.best = self.window;
            self.probing = false;
            self.restart(now, throttled);
            return;
        }
        if self.epoch_pages < Self::epoch_len(self.window) {
            return;
        }
        let elapsed = now
            .saturating_duration_since(self.epoch_start)
            .max(Duration::from_micros(1));
        let rate = self.epoch_pages as f64 / elapsed.as_secs_f64();
        if self.probing {
            if self.best_rate == 0.0 || rate >= self.best_rate * GAIN {
                self.best = self.window;
                self.best_rate = rate;
                let wider = (self.window * 2).min(self.max);
                let pays_off = remaining.is_none_or(|left| left >= PAYOFF * Self::epoch_len(wider));
                if pays_off {
                    self.window = wider;
                }
                self.probing = self.window > self.best;
            } else {
                self.window = self.best;
                self.probing = false;
            }
        } else if rate < self.best_rate * SLOWDOWN && self.window > 1 {
            self.window = (self.window / 2).max(1);
            self.best = self.window;
            self.best_rate = rate;
        }
        self.restart(now, throttled);
    }

    fn restart(&mut self, now: Instant, throttled: u32) {
        self.epoch_start = now;
        self.epoch_pages = 0;
        self.epoch_throttled = throttled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pacer against a service whose page latency is `latency(window)`.
    fn settle(max: usize, latency: impl Fn(usize) -> Duration) -> usize {
        let mut now = Instant::now();
        let mut p = Pacer::new(max, now, 0);
        for _ in 0..200 {
            let w = p.window();
            // `w` pages finish together after one latency.
            now += latency(w);
            for _ in 0..w {
                p.page_done(now, 0, None);
            }
        }
        p.window()
    }

    /// Reads a list of `pages` pages (the first read alone) and returns the widest window
    /// used, against a service whose page latency is `latency(window)`.
    fn widest(pages: usize, max: usize, latency: impl Fn(usize) -> Duration) -> usize {
        let mut now = Instant::now();
        let mut p = Pacer::new(max, now, 0);
        let (mut requested, mut widest) = (1, 1);
        while requested < pages {
            let w = p.window().min(pages - requested);
            widest = widest.max(w);
            requested += w;
            now += latency(w);
            for _ in 0..w {
                p.page_done(now, 0, Some(pages - requested));
            }
        }
        widest
    }

    #[test]
    fn a_short_list_is_read_sequentially_without_a_probe() {
        // Ten pages (10,000 users at 1,000 a page): a probe could not pay for itself.
        assert_eq!(widest(10, 8, |_| Duration::from_millis(100)), 1);
        assert_eq!(widest(10, 8, |w| Duration::from_millis(100 * w as u64)), 1);
    }

    #[test]
    fn a_long_list_on_a_scaling_service_still_goes_parallel() {
        assert_eq!(widest(100, 8, |_| Duration::from_millis(100)), 8);
        // A single-threaded one is probed once at 2 and read sequentially after.
        assert_eq!(widest(100, 8, |w| Duration::from_millis(100 * w as u64)), 2);
    }

    #[test]
    fn single_threaded_service_stays_sequential() {
        // Each page costs 100 ms of the server's one thread, however many wait.
        let w = settle(8, |w| Duration::from_millis(100 * w as u64));
        assert_eq!(w, 1);
    }

    #[test]
    fn contended_service_stays_sequential() {
        // More in flight is slower in total (the case of the 1.8x steady state).
        let w = settle(8, |w| Duration::from_millis(130 * w as u64));
        assert_eq!(w, 1);
    }

    #[test]
    fn scaling_service_goes_parallel() {
        let w = settle(8, |_| Duration::from_millis(100));
        assert_eq!(w, 8);
    }

    #[test]
    fn throttling_halves_the_window() {
        let mut now = Instant::now();
        let mut p = Pacer::new(8, now, 0);
        for _ in 0..40 {
            now += Duration::from_millis(50);
            let w = p.window();
            for _ in 0..w {
                p.page_done(now, 0, None);
            }
        }
        assert_eq!(p.window(), 8);
        p.page_done(now, 1, None);
        assert_eq!(p.window(), 4);
        p.page_done(now, 2, None);
        assert_eq!(p.window(), 2);
    }
}
