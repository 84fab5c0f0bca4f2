//! The choices that involve a draw or a ranking across a pool: the weighted draw without
//! replacement that orders a `weighted` pool, and the ordering of an alias's models by what
//! each model's provider pool knows now.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Deployment, Pool};
use crate::config::Strategy;

/// Orders `ready` by a weighted draw without replacement: each deployment comes first with a
/// probability proportional to its weight.
pub(super) fn weighted(ready: &mut [Arc<Deployment>], turn: u64) {
    let mut seed = splitmix(turn ^ 0x9e37_79b9_7f4a_7c15);
    for start in 0..ready.len().saturating_sub(1) {
        let total: u64 = ready[start..].iter().map(|d| u64::from(d.weight)).sum();
        seed = splitmix(seed);
        let mut pick = seed % total.max(1);
        let mut chosen = start;
        for (i, d) in ready[start..].iter().enumerate() {
            let w = u64::from(d.weight);
            if pick < w {
                chosen = start + i;
                break;
            }
            pick -= w;
        }
        ready.swap(start, chosen);
    }
}

/// A 64-bit mix (SplitMix64): a cheap, well-spread number from a counter.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Orders the models of an alias over several models by `strategy`, from what each one's
/// provider pool knows now: those with a deployment ready first, then by the fewest calls in
/// flight (`least-busy`), the quickest first byte (`latency`), the most headroom (`usage`), or
/// a draw (`weighted`, each model weighing the same).
pub(crate) fn order_models(
    strategy: Strategy,
    plan: &mut [crate::catalog::ModelInfo],
    pool_of: impl Fn(&str) -> Option<Arc<Pool>>,
    turn: u64,
) {
    let now = Instant::now();
    let mut seed = splitmix(turn);
    let mut keys: Vec<(bool, u64, usize, usize)> = Vec::with_capacity(plan.len());
    for (i, model) in plan.iter().enumerate() {
        let pool = pool_of(&model.provider);
        let ready: Vec<Arc<Deployment>> = pool.map(|p| p.order(now).0).unwrap_or_default();
        let metric = match strategy {
            Strategy::Weighted => {
                seed = splitmix(seed);
                seed
            }
            Strategy::LeastBusy => ready.iter().map(|d| d.state.in_flight() as u64).sum(),
            Strategy::Latency => ready.iter().map(|d| d.state.ttfb_rank()).min().unwrap_or(u64::MAX),
            // The most headroom first: sorted ascending, so its complement.
            Strategy::Usage => ready
                .iter()
                .map(|d| u64::MAX - (d.headroom(now) * 1e9) as u64)
                .min()
                .unwrap_or(u64::MAX),
        };
        // Ties go round the models rather than always to the first.
        let rotated = (i + (turn % plan.len().max(1) as u64) as usize) % plan.len().max(1);
        keys.push((ready.is_empty(), metric, rotated, i));
    }
    keys.sort();
    let order: Vec<usize> = keys.into_iter().map(|(_, _, _, i)| i).collect();
    apply_order(plan, &order);
}

/// Puts `plan[order[0]]` first, `plan[order[1]]` second, and so on.
pub(super) fn apply_order<T>(plan: &mut [T], order: &[usize]) {
    let mut position: Vec<usize> = (0..plan.len()).collect(); // where each original item is now
    let mut at: Vec<usize> = (0..plan.len()).collect(); // which original item is at each place
    for (target, &item) in order.iter().enumerate() {
        let from = position[item];
        plan.swap(target, from);
        let displaced = at[target];
        at.swap(target, from);
        position[item] = target;
        position[displaced] = from;
    }
}
