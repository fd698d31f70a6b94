//! The statistics of the report: the chi-square survival function (through the regularized
//! upper incomplete gamma function) and binomial tails, written out so that the simulator needs
//! no numerics crate.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)`, for `a > 0`,
/// `x >= 0`: a series for `x < a + 1`, else a continued fraction (modified Lentz).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P(a, x) = e^-x x^a / Γ(a+1) * Σ x^n / ((a+1)...(a+n))
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * ln_prefix.exp()).clamp(0.0, 1.0)
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (ln_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// `P(X >= stat)` for X chi-square with `df` degrees of freedom: `Q(df/2, stat/2)`.
pub fn chi_square_sf(stat: f64, df: u64) -> f64 {
    if df == 0 {
        return 1.0;
    }
    gamma_q(df as f64 / 2.0, stat / 2.0)
}

/// Pearson's goodness of fit of `observed` counts to `expected` ones (cells with a positive
/// expectation): the statistic, the degrees of freedom (cells - 1) and the p-value.
pub fn chi_square_gof(observed: &[f64], expected: &[f64]) -> (f64, u64, f64) {
    let mut stat = 0.0;
    let mut cells = 0u64;
    for (o, e) in observed.iter().zip(expected) {
        if *e > 0.0 {
            stat += (o - e) * (o - e) / e;
            cells += 1;
        }
    }
    let df = cells.saturating_sub(1);
    (stat, df, chi_square_sf(stat, df))
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`.
pub fn binomial_sf(n: u64, p: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let ln_n = ln_gamma(nf + 1.0);
    let total: f64 = (k..=n)
        .map(|j| {
            let jf = j as f64;
            (ln_n - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0)
                + jf * p.ln()
                + (nf - jf) * (1.0 - p).ln())
            .exp()
        })
        .sum();
    total.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!(ln_gamma(2.0).abs() < 1e-14);
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        assert!(close(ln_gamma(101.0), 363.739_375_555_563_5, 1e-13));
    }

    #[test]
    fn chi_square_survival_matches_tables() {
        // Critical values of the chi-square table (and closed forms for even df).
        let cases = [
            (3.841_458_820_694_124, 1, 0.05),
            (6.634_896_601_021_214, 1, 0.01),
            (5.991_464_547_107_979, 2, 0.05),
            (2.0, 2, (-1.0f64).exp()),
            (10.0, 4, 6.0 * (-5.0f64).exp()),
            (11.070_497_693_516_35, 5, 0.05),
            (15.086_272_469_388_99, 5, 0.01),
            (18.307_038_053_275_146, 10, 0.05),
            (124.342_113_404_070_6, 100, 0.05),
            (0.0, 3, 1.0),
        ];
        for (stat, df, p) in cases {
            let got = chi_square_sf(stat, df);
            assert!(
                close(got, p, 1e-9),
                "sf({stat}, {df}) = {got}, expected {p}"
            );
        }
        assert!(chi_square_sf(1000.0, 5) < 1e-200);
        assert!(close(gamma_q(1.0, 3.0), (-3.0f64).exp(), 1e-12));
    }

    #[test]
    fn gof_and_binomial() {
        let (stat, df, p) = chi_square_gof(&[10.0, 10.0, 10.0], &[10.0, 10.0, 10.0]);
        assert_eq!((stat, df, p), (0.0, 2, 1.0));
        let (_, _, p) = chi_square_gof(&[50.0, 0.0], &[25.0, 25.0]);
        assert!(p < 1e-10);
        assert!(close(binomial_sf(10, 0.5, 10), 1.0 / 1024.0, 1e-12));
        assert!(close(binomial_sf(10, 0.5, 9), 11.0 / 1024.0, 1e-12));
        assert_eq!(binomial_sf(10, 0.5, 0), 1.0);
        assert_eq!(binomial_sf(10, 0.0, 1), 0.0);
        assert!(close(binomial_sf(3, 0.2, 1), 1.0 - 0.8f64.powi(3), 1e-12));
    }
}
