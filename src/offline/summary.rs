//! The summary `op25b classify` prints after the frames: verdicts per action and per
//! reason.
#![forbid(unsafe_code)]

use crate::policy::{Action, Reason, Verdict};

/// Frames counted per (reason, action).
#[derive(Clone, Debug)]
pub struct VerdictTally {
    counts: Vec<[u64; 3]>,
    frames: u64,
}

impl Default for VerdictTally {
    fn default() -> Self {
        Self {
            counts: vec![[0; 3]; Reason::COUNT],
            frames: 0,
        }
    }
}

impl VerdictTally {
    pub fn record(&mut self, v: Verdict) {
        self.counts[v.reason().index()][v.action_index()] += 1;
        self.frames += 1;
    }

    /// Frames recorded.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames per action (forward, drop, reject).
    pub fn by_action(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for row in &self.counts {
            for (i, n) in row.iter().enumerate() {
                out[i] += n;
            }
        }
        out
    }

    /// (action, reason, frames) for every non-zero pair, in reason order.
    pub fn rows(&self) -> impl Iterator<Item = (&'static str, Reason, u64)> + '_ {
        Reason::ALL.into_iter().flat_map(move |r| {
            self.counts[r.index()]
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(move |(i, &n)| (Action::ALL[i].as_str(), r, n))
        })
    }

    /// The text summary, one line each.
    pub fn text_lines(&self) -> Vec<String> {
        let a = self.by_action();
        let mut out = vec![format!(
            "summary: {} frames: {} forward, {} drop, {} reject",
            self.frames, a[0], a[1], a[2]
        )];
        out.extend(
            self.rows()
                .map(|(action, r, n)| format!("summary: {action:<8} {:<20} {n}", r.as_str())),
        );
        out
    }

    /// The JSON summary line; `complete` is false when the capture ended in damage.
    pub fn json(&self, complete: bool) -> serde_json::Value {
        let a = self.by_action();
        let reasons: serde_json::Map<String, serde_json::Value> = self
            .rows()
            .map(|(action, r, n)| (format!("{action}/{}", r.as_str()), n.into()))
            .collect();
        serde_json::json!({"summary": {
            "frames": self.frames,
            "forward": a[0], "drop": a[1], "reject": a[2],
            "reasons": reasons,
            "complete": complete,
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ReplyKind;

    #[test]
    fn counts_by_action_and_reason() {
        let mut t = VerdictTally::default();
        t.record(Verdict::Forward(Reason::NotTcp));
        t.record(Verdict::Forward(Reason::NotTcp));
        t.record(Verdict::Drop(Reason::BlockedPort));
        t.record(Verdict::Reject(Reason::BlockedPort, ReplyKind::TcpReset));
        assert_eq!(t.frames(), 4);
        assert_eq!(t.by_action(), [2, 1, 1]);
        let lines = t.text_lines();
        assert_eq!(lines[0], "summary: 4 frames: 2 forward, 1 drop, 1 reject");
        assert_eq!(lines.len(), 4, "{lines:?}");
        let j = t.json(true);
        assert_eq!(j["summary"]["reasons"]["forward/not_tcp"], 2);
        assert_eq!(j["summary"]["drop"], 1);
        assert_eq!(j["summary"]["complete"], true);
    }

    #[test]
    fn empty_tally_has_only_the_total_line() {
        let t = VerdictTally::default();
        assert_eq!(
            t.text_lines(),
            vec!["summary: 0 frames: 0 forward, 0 drop, 0 reject"]
        );
        assert_eq!(t.json(false)["summary"]["complete"], false);
    }
}
