//! The one reader of the Prometheus text exposition format (version 0.0.4) in op25b:
//! `op25b status` and the end-to-end tests read /metrics through it.
//!
//! Each sample line is `name{label="value",...} value [timestamp]`; label values are
//! unescaped (`\\`, `\"`, `\n`), the value may be `+Inf`, `-Inf` or `NaN`, the timestamp
//! is ignored. `#` lines (HELP, TYPE, comments) and blank lines are skipped.

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Named `name` exactly, and carrying every `(key, value)` of `labels` (others may be
    /// there too).
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && labels.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// A line that is not a sample.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line}: {message}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    pub text: String,
}

/// Every sample of one exposition, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses a whole exposition; the first malformed line is an error.
    pub fn parse(text: &str) -> Result<Samples, ParseError> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            out.push(parse_line(l).map_err(|message| ParseError {
                line: i + 1,
                message,
                text: raw.to_string(),
            })?);
        }
        Ok(Samples(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter()
    }

    /// The samples named `name` that carry every label of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.matches(name, labels))
    }

    /// The value of the one sample that matches (`None` when none or several do: give
    /// enough labels to name one series).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.matching(name, labels);
        match (it.next(), it.next()) {
            (Some(s), None) => Some(s.value),
            _ => None,
        }
    }

    /// The sum over the samples that match (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// One sample line (trimmed, not a comment).
fn parse_line(l: &str) -> Result<Sample, String> {
    let end = l
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(l.len(), |(i, _)| i);
    if end == 0 {
        return Err("expected a metric name".into());
    }
    let name = l[..end].to_string();
    let mut rest = &l[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let kend = rest
                .char_indices()
                .find(|&(i, c)| !(is_name_char(c, i == 0) && c != ':'))
                .map_or(rest.len(), |(i, _)| i);
            if kend == 0 {
                return Err("expected a label name".into());
            }
            let key = rest[..kend].to_string();
            rest = rest[kend..].trim_start();
            rest = rest
                .strip_prefix('=')
                .ok_or("expected '=' after the label name")?
                .trim_start();
            rest = rest
                .strip_prefix('"')
                .ok_or("expected a quoted label value")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key, value));
            rest = rest[close + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("expected a space before the value".into());
    }
    let mut fields = rest.split_whitespace();
    let v = fields.next().ok_or("no value")?;
    let value = match v {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v.parse().map_err(|_| format!("{v:?} is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("{ts:?} is not a timestamp (milliseconds)"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP op25b_frames_total Frames by verdict.
# TYPE op25b_frames_total counter
op25b_frames_total{worker="0",direction="outbound",verdict="reject",reason="blocked_port"} 2
op25b_frames_total{worker="1",direction="outbound",verdict="reject",reason="blocked_port"} 3
op25b_frames_total{worker="0",direction="inbound",verdict="forward",reason="port_open"} 7

op25b_policy_generation 21
op25b_info{mode="native XDP, copy mode"} 1
weird{path="C:\\dir",say="a \"quoted\" word\nnext", } 1.5e3 1700000000000
le_bucket{le="+Inf"} +Inf
nan_gauge NaN
neg -Inf
"#;

    #[test]
    fn parses_names_labels_values() {
        let s = Samples::parse(TEXT).unwrap();
        assert_eq!(s.0.len(), 9);
        assert_eq!(s.get("op25b_policy_generation", &[]), Some(21.0));
        assert_eq!(
            s.get(
                "op25b_frames_total",
                &[("worker", "1"), ("verdict", "reject")]
            ),
            Some(3.0)
        );
        // Several match: get names none, sum adds them.
        assert_eq!(s.get("op25b_frames_total", &[("verdict", "reject")]), None);
        assert_eq!(s.sum("op25b_frames_total", &[("verdict", "reject")]), 5.0);
        assert_eq!(s.sum("op25b_frames_total", &[]), 12.0);
        // The exact name: a prefix of another name is not that name.
        assert_eq!(s.sum("op25b_frames", &[]), 0.0);
        assert_eq!(s.get("op25b_frames_total", &[("worker", "9")]), None);
        let info = s.matching("op25b_info", &[]).next().unwrap();
        assert_eq!(info.label("mode"), Some("native XDP, copy mode"));
        // Escapes, a trailing comma and a timestamp.
        let w = s.matching("weird", &[]).next().unwrap();
        assert_eq!(w.label("path"), Some("C:\\dir"));
        assert_eq!(w.label("say"), Some("a \"quoted\" word\nnext"));
        assert_eq!(w.value, 1500.0);
        assert_eq!(s.get("le_bucket", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert!(s.get("nan_gauge", &[]).unwrap().is_nan());
        assert_eq!(s.get("neg", &[]), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn names_the_bad_line() {
        for (bad, why) in [
            ("x{a=\"1\" 2", "expected ',' or '}'"),
            ("x{a=1} 2", "quoted label value"),
            ("x{a=\"1} 2", "unterminated"),
            ("x 1 2 3", "after the timestamp"),
            ("x one", "not a number"),
            ("x", "space before the value"),
            ("{a=\"1\"} 2", "metric name"),
            ("x{a=\"\\t\"} 2", "bad escape"),
        ] {
            let e = Samples::parse(&format!("# ok\nok 1\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 3, "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
