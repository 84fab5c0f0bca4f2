//! Money as people read it: USD amounts are kept at full precision in the ledger and the
//! meters, and rounded to the micro-dollar (6 decimals) wherever they are shown — JSON included,
//! so a cost reads `0.000024`, never `0.000024200000000000002`.

/// `usd` rounded to 6 decimals.
pub fn round_usd(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

/// Serializes a USD amount rounded to 6 decimals (`#[serde(serialize_with = …)]`).
pub(crate) fn usd<S: serde::Serializer>(usd: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_usd(*usd))
}

/// [`usd`] for an amount that may be absent.
pub(crate) fn usd_opt<S: serde::Serializer>(usd: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match usd {
        Some(v) => s.serialize_some(&round_usd(*v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_to_the_micro_dollar() {
        #[derive(serde::Serialize)]
        struct Shown {
            #[serde(serialize_with = "usd")]
            cost: f64,
            #[serde(serialize_with = "usd_opt")]
            left: Option<f64>,
        }
        let shown = Shown {
            cost: 0.000024200000000000002,
            left: Some(19.999_975_8),
        };
        assert_eq!(
            serde_json::to_string(&shown).unwrap_or_default(),
            r#"{"cost":0.000024,"left":19.999976}"#
        );
        assert_eq!(round_usd(0.1 + 0.2), 0.3);
    }
}
