//! Dead letters: records a destination refused for good (a status in its
//! drop list) or that cannot be encoded for their route. Owns the verdict
//! of one record over all its destinations and what that verdict answers
//! XDR.

use sluice_codec::ack;

use crate::dest::Outcome;

/// One record's (or batch's) delivery over every routed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every destination accepted it.
    Delivered,
    /// At least one destination failed for now: XDR resends it (11); the
    /// destinations that accepted get it again (at least once).
    Failed,
    /// No destination failed for now, and these refused it for good.
    Rejected(Vec<Rejection>),
}

/// Why one destination refused a record for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub destination: String,
    /// The HTTP status, or 0 when the record was never sent (unencodable).
    pub status: u16,
    pub reason: String,
}

impl Verdict {
    /// Folds one destination's outcome into the record's verdict.
    pub fn add(self, destination: &str, outcome: Outcome) -> Verdict {
        match (self, outcome) {
            (Verdict::Failed, _) | (_, Outcome::Failed) => Verdict::Failed,
            (v, Outcome::Delivered) => v,
            (v, Outcome::Rejected { status, url }) => {
                let mut list = match v {
                    Verdict::Rejected(list) => list,
                    _ => Vec::new(),
                };
                list.push(Rejection {
                    destination: destination.to_string(),
                    status,
                    reason: format!("endpoint {url} answered status {status}"),
                });
                Verdict::Rejected(list)
            }
        }
    }

    /// The ack without a dead-letter file: a rejected record is answered
    /// with the abandon code (4) and logged, since resending cannot help.
    pub fn ack_without_dead_letters(&self) -> u8 {
        match self {
            Verdict::Delivered => ack::OK,
            Verdict::Failed => ack::UNAVAILABLE,
            Verdict::Rejected(list) => {
                for r in list {
                    tracing::warn!(destination = %r.destination, status = r.status, reason = %r.reason,
                        "record refused for good and no dead-letter file is configured; answered 4 (XDR abandons it)");
                }
                ack::PARAMETER
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_failure_wins_then_rejections_are_kept() {
        let rejected = || Outcome::Rejected {
            status: 400,
            url: "http://a/".into(),
        };
        let v = Verdict::Delivered.add("a", Outcome::Delivered);
        assert_eq!(v, Verdict::Delivered);
        let v = Verdict::Delivered
            .add("a", rejected())
            .add("b", Outcome::Delivered);
        let Verdict::Rejected(list) = &v else {
            panic!("{v:?}");
        };
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].destination, "a");
        assert_eq!(list[0].status, 400);
        assert_eq!(v.ack_without_dead_letters(), ack::PARAMETER);
        let v = v.add("c", Outcome::Failed);
        assert_eq!(v, Verdict::Failed);
        assert_eq!(v.clone().add("d", rejected()), Verdict::Failed);
        assert_eq!(v.ack_without_dead_letters(), ack::UNAVAILABLE);
    }
}
