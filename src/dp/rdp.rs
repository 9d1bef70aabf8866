//! The Rényi-DP accountant of the Poisson-sampled Gaussian mechanism (Mironov, Talwar and Zhang,
//! "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019, §3.3), composed over
//! steps, and its conversion to (ε, δ) by the improved bound of Balle et al. 2020 (Prop. 12), as
//! Google's `dp-accounting` computes them (its default orders; the tests hold our figures to its).

use statrs::function::erf::erfc;
use statrs::function::gamma::ln_gamma;

/// The orders α the accountant tries: dp-accounting's defaults (1.1 to 10.9 by tenths, 11 to 63,
/// then 128, 256, 512, 1024).
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + x as f64 / 10.0)
        .chain((11..64).map(f64::from))
        .chain([128.0, 256.0, 512.0, 1024.0])
        .collect()
}

/// log(e^a + e^b).
fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// log|Γ(x)|, for negative x too (by reflection), as scipy's `gammaln`.
fn ln_abs_gamma(x: f64) -> f64 {
    if x >= 0.5 {
        return ln_gamma(x);
    }
    let pi = std::f64::consts::PI;
    pi.ln() - (pi * x).sin().abs().ln() - ln_gamma(1.0 - x)
}

/// log|n choose k|, real n and k (the series of a fractional order runs past k = n).
fn log_comb(n: f64, k: f64) -> f64 {
    ln_abs_gamma(n + 1.0) - ln_abs_gamma(k + 1.0) - ln_abs_gamma(n - k + 1.0)
}

/// log(erfc(x)), accurate in the far tail where erfc underflows.
fn log_erfc(x: f64) -> f64 {
    let r = erfc(x);
    if r > 0.0 {
        return r.ln();
    }
    // The asymptotic series of erfc at infinity.
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x * x - 0.5 / x.powi(2) + 0.625 / x.powi(4)
        - 37.0 / 24.0 / x.powi(6)
        + 353.0 / 64.0 / x.powi(8)
}

/// log(A_α) for an integer order: the binomial expansion of E[(p/q)^α].
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let (lq, l1mq) = (q.ln(), (-q).ln_1p());
    (0..=alpha).fold(f64::NEG_INFINITY, |acc, i| {
        let i = i as f64;
        let coef = log_comb(alpha as f64, i) + i * lq + (alpha as f64 - i) * l1mq;
        log_add(acc, coef + (i * i - i) / (2.0 * sigma * sigma))
    })
}

/// log(A_α) for a fractional order: the two tails of the integral split at z0, summed as series
/// until both terms fall and are negligible; +inf (the order is left out) without convergence.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let (lq, l1mq) = (q.ln(), (-q).ln_1p());
    let (mut last0, mut last1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let s2 = std::f64::consts::SQRT_2 * sigma;
    for i in 0..1000 {
        let i = i as f64;
        let coef = log_comb(alpha, i);
        let j = alpha - i;
        let t0 = coef + i * lq + j * l1mq;
        let t1 = coef + j * lq + i * l1mq;
        let e0 = 0.5f64.ln() + log_erfc((i - z0) / s2);
        let e1 = 0.5f64.ln() + log_erfc((z0 - j) / s2);
        let s0 = t0 + (i * i - i) / (2.0 * sigma * sigma) + e0;
        let s1 = t1 + (j * j - j) / (2.0 * sigma * sigma) + e1;
        a0 = log_add(a0, s0);
        a1 = log_add(a1, s1);
        let total = log_add(a0, a1);
        if s0 < last0 && s1 < last1 && s0.max(s1) < total - 30.0 {
            return total;
        }
        (last0, last1) = (s0, s1);
    }
    f64::INFINITY
}

/// The RDP at order `alpha` of one step of the Gaussian mechanism with noise multiplier `sigma`
/// (noise standard deviation over L2 sensitivity) on a Poisson sample at rate `q`.
pub fn sampled_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// The smallest ε, and the order giving it, at which RDP values `rdp` (at `orders`) give
/// (ε, δ)-DP.
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, 0.0);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// (ε, order) after `steps` compositions of the sampled Gaussian mechanism at rate `q` with noise
/// multiplier `sigma`, for `delta`.
pub fn spent(q: f64, sigma: f64, steps: usize, delta: f64) -> (f64, f64) {
    let orders = default_orders();
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| steps as f64 * sampled_gaussian(q, sigma, a))
        .collect();
    epsilon(&orders, &rdp, delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Google's dp-accounting 0.6.0 (`RdpAccountant` with its default orders,
    /// `PoissonSampledDpEvent(q, GaussianDpEvent(sigma))` composed `steps` times).
    #[test]
    fn epsilons_equal_dp_accountings() {
        let cases = [
            (0.01, 4.0, 10000, 1e-5, 1.0354900660362436, 17.0),
            (256.0 / 60000.0, 1.1, 14062, 1e-5, 2.5965558697943036, 8.1),
            (0.05, 1.0, 1000, 1e-5, 12.016955906744293, 2.8),
            (1.0, 2.0, 100, 1e-5, 35.08175401905626, 1.9),
            (64.0 / 6000.0, 1.0, 300, 1e-5, 1.5168575574937029, 8.3),
            (128.0 / 2711.0, 1.0, 300, 1e-5, 6.084434336942808, 3.9),
        ];
        for (q, sigma, steps, delta, want, order) in cases {
            let (eps, at) = spent(q, sigma, steps, delta);
            assert!(
                (eps - want).abs() < 1e-9 * want,
                "q {q} sigma {sigma}: {eps} vs {want}"
            );
            assert!((at - order).abs() < 1e-9, "order {at} vs {order}");
        }
    }

    /// One step's RDP at integer and fractional orders, against dp-accounting's.
    #[test]
    fn rdp_at_single_orders_equals_dp_accountings() {
        let cases = [
            (0.01, 4.0, 1.5, 5.141639618328727e-06),
            (0.01, 4.0, 32.0, 0.00010526360659077987),
            (0.05, 1.0, 2.5, 0.005726347837744755),
            (0.05, 1.0, 7.0, 0.16638761450152476),
            (256.0 / 60000.0, 1.1, 12.3, 0.0001651236724389951),
        ];
        for (q, sigma, alpha, want) in cases {
            let got = sampled_gaussian(q, sigma, alpha);
            assert!(
                (got - want).abs() < 1e-9 * want,
                "alpha {alpha}: {got} vs {want}"
            );
        }
    }

    /// Without sampling the Gaussian mechanism's RDP is α/(2σ²) per step, by hand.
    #[test]
    fn the_unsampled_gaussian_is_alpha_over_two_sigma_squared() {
        assert_eq!(sampled_gaussian(1.0, 2.0, 4.0), 0.5);
        // Integer-order expansion at q -> 1 agrees with the closed form.
        let near = sampled_gaussian(1.0 - 1e-12, 2.0, 4.0);
        assert!((near - 0.5).abs() < 1e-6, "{near}");
        assert_eq!(sampled_gaussian(0.0, 2.0, 4.0), 0.0);
    }
}
