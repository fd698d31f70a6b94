//! The `[rules]` table: overrides of the default rules (PROTOCOL.md 11), checked key by key.
//!
//! The known keys and their types come from serializing `Rules::default()`, so that a rule added
//! to the consensus crate can be overridden here without a change.

use std::collections::BTreeMap;
use std::ops::Range;

use chorus_consensus::{Rules, RulesError};
use chorus_media::manifest::SEGMENT_MS;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::error::{Problem, SeedError};
use super::{Source, in_file_order, unknown_key};

/// The default rules with the overrides of a `[rules]` table applied, validated.
pub(super) fn parse(src: &Source<'_>, table: &Spanned<DeValue<'_>>) -> Result<Rules, SeedError> {
    let DeValue::Table(entries) = table.get_ref() else {
        return Err(src.error(
            table.span(),
            "rules",
            Problem::WrongType {
                expected: "a [rules] table",
                found: table.get_ref().type_str(),
            },
        ));
    };
    let defaults = toml::Table::try_from(Rules::default())
        .expect("the rules serialize to a TOML table of numbers");
    let mut merged = defaults.clone();
    // Where each override was written, to point a validation error at it.
    let mut lines: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for (key, value) in in_file_order(entries) {
        let name = key.get_ref().as_ref();
        let field = format!("rules.{name}");
        let Some(default) = defaults.get(name) else {
            let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
            return Err(src.error(key.span(), field, unknown_key(name, &known)));
        };
        let parsed =
            override_value(default, value).map_err(|p| src.error(value.span(), &field, p))?;
        merged.insert(name.to_owned(), parsed);
        lines.insert(name.to_owned(), key.span());
    }
    let rules: Rules = merged.try_into().map_err(|e| {
        src.error(
            table.span(),
            "rules",
            Problem::Value(e.message().to_owned()),
        )
    })?;
    let at = |name: &str| {
        let span = lines.get(name).cloned().unwrap_or_else(|| table.span());
        (span, format!("rules.{name}"))
    };
    if let Err(e) = rules.validate() {
        let name = match &e {
            RulesError::Lookahead(_) => "lookahead",
            RulesError::Zero(name) | RulesError::Percent { name, .. } => name,
            RulesError::TrackBounds { .. } if lines.contains_key("min_track_ms") => "min_track_ms",
            RulesError::TrackBounds { .. } | RulesError::TrackTooLong(_) => "max_track_ms",
            RulesError::TargetLufs => "target_lufs",
            RulesError::EnrollDelay { .. } => "enroll_delay",
            RulesError::EnrollPerSlot(_) => "enroll_per_slot",
            RulesError::Decode(_) => "rules",
        };
        let (span, field) = at(name);
        return Err(src.error(span, field, Problem::Rules(e)));
    }
    // The protocol lets a network choose its segment length, but this build's media pipeline
    // cuts only one: a network of other segments could never play a track.
    if rules.segment_ms != SEGMENT_MS {
        let (span, field) = at("segment_ms");
        return Err(src.error(
            span,
            field,
            Problem::SegmentLength {
                value: rules.segment_ms,
                supported: SEGMENT_MS,
            },
        ));
    }
    Ok(rules)
}

/// One override, of the TOML type of its default.
fn override_value(
    default: &toml::Value,
    value: &Spanned<DeValue<'_>>,
) -> Result<toml::Value, Problem> {
    let wrong_type = || Problem::WrongType {
        expected: match default {
            toml::Value::Integer(_) => "a whole number",
            toml::Value::Float(_) => "a number",
            toml::Value::Boolean(_) => "true or false",
            _ => "a string",
        },
        found: value.get_ref().type_str(),
    };
    let parsed = toml::Value::deserialize(ValueDeserializer::from(value.clone()))
        .map_err(|e| Problem::Value(e.message().to_owned()))?;
    match (default, parsed) {
        (toml::Value::Integer(_), toml::Value::Integer(n)) if n < 0 => Err(Problem::Number {
            value: n.to_string(),
            expected: "0 or more",
        }),
        // A whole number is fine for a float rule (`target_lufs = -14`).
        (toml::Value::Float(_), toml::Value::Integer(n)) => Ok(toml::Value::Float(n as f64)),
        (default, parsed) if default.same_type(&parsed) => Ok(parsed),
        _ => Err(wrong_type()),
    }
}
