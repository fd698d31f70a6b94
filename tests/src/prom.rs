//! A checker for the Prometheus text exposition format (and its OpenMetrics flavour): what a
//! scraper needs to read `/metrics`.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (with `_total`, `_bucket`... suffixes).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Parses an exposition; every line must be a well-formed comment, `# HELP`, `# TYPE`, `# UNIT`,
/// `# EOF` or sample, every sample must belong to a family declared by `# TYPE` before it (the
/// name, or the name plus a suffix its type allows), and `# EOF`, when present, must be last.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if eof {
            return Err(at("text after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            comment(rest, &mut types).map_err(at)?;
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        samples.push(sample(line, &types).map_err(|m| at(&m))?);
    }
    Ok(samples)
}

/// The metric types of the exposition formats.
const TYPES: [&str; 9] = [
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "info",
    "stateset",
    "gaugehistogram",
];

/// Checks a `# ...` line (without the `# `): a `# TYPE` declares its family in `types`.
fn comment(rest: &str, types: &mut BTreeMap<String, String>) -> Result<(), &'static str> {
    let mut parts = rest.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("TYPE"), Some(name), Some(kind)) => {
            if !valid_name(name) {
                return Err("bad metric name");
            }
            if !TYPES.contains(&kind) {
                return Err("unknown type");
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err("family declared twice");
            }
        }
        (Some("HELP" | "UNIT"), Some(name), _) if valid_name(name) => {}
        (Some("HELP" | "UNIT"), _, _) => return Err("bad HELP or UNIT"),
        _ => {}
    }
    Ok(())
}

/// Parses a sample line, which must belong to a family of `types`.
fn sample(line: &str, types: &BTreeMap<String, String>) -> Result<Sample, String> {
    let (name_labels, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}').ok_or("unclosed labels")?;
            (&line[..=close], line[close + 1..].trim_start())
        }
        None => line.split_once(' ').ok_or("no value")?,
    };
    let (name, labels) = match name_labels.split_once('{') {
        Some((n, l)) => (n, parse_labels(&l[..l.len() - 1])?),
        None => (name_labels, BTreeMap::new()),
    };
    if !valid_name(name) {
        return Err("bad metric name".into());
    }
    let mut fields = rest.split_whitespace();
    let v = fields.next().and_then(value).ok_or("bad value")?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err("bad timestamp".into());
    }
    let family = types.iter().find(|(f, kind)| {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created", ""],
            "histogram" | "gaugehistogram" => {
                &["_bucket", "_sum", "_count", "_created", "_gcount", "_gsum"]
            }
            "summary" => &["_sum", "_count", "_created", ""],
            "info" => &["_info"],
            _ => &[""],
        };
        suffixes.iter().any(|s| name == format!("{f}{s}"))
    });
    if family.is_none() {
        return Err("sample of no declared family".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: v,
    })
}

fn parse_labels(mut s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (name, rest) = s.split_once("=\"").ok_or("label without =\"")?;
        if !valid_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in a label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.insert(name.to_owned(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_text_and_rejects_bad() {
        let good = "# HELP a_total Things.\n# TYPE a counter\na_total 3\n# TYPE h histogram\nh_bucket{le=\"0.5\",x=\"q\\\"\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n# EOF\n";
        let s = parse(good).expect("good text");
        assert_eq!(s.len(), 5);
        assert_eq!(s[1].labels["x"], "q\"");
        for bad in [
            "a 1\n",
            "# TYPE a counter\na_total x\n",
            "# TYPE a gauge\na{b=1} 2\n",
            "# TYPE a gauge\n# EOF\na 1\n",
            "# TYPE 1a gauge\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
