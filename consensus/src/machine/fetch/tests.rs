use super::super::test_builder::TestBuilder;
use super::*;
use crate::message::Message;

#[test]
fn an_unanswered_fetch_is_retried_with_another_announcer() {
    let mut net = TestBuilder::new(3)
        .library(2, vec![])
        .drop_if(|_, to, m| to == 2 && matches!(m, Message::Proposal(_)))
        .lose_fetches(1)
        .build();
    net.run_until_len(8);
    for slot in 5..8 {
        net.assert_agree(slot);
        let decided = net.nodes[2].chain().decided(slot).expect("decided");
        assert!(decided.proposal_id.is_some(), "slot {slot}");
    }
    let fetches: Vec<(u64, PeerId, u64, Vec<Hash32>)> = net
        .events
        .iter()
        .filter_map(|(n, t, a)| match a {
            Action::FetchProposals { peer, slot, ids } if *n == 2 => {
                Some((*t, *peer, *slot, ids.clone()))
            }
            _ => None,
        })
        .collect();
    let (t0, first_peer, slot, ids) = fetches.first().cloned().expect("node 2 fetched");
    let retry = fetches
        .iter()
        .skip(1)
        .find(|(_, _, s, i)| *s == slot && i.iter().any(|id| ids.contains(id)))
        .cloned()
        .expect("the lost request was sent again");
    assert_eq!(retry.0, t0 + FETCH_TIMEOUT_MS);
    assert_ne!(retry.1, first_peer, "to the other node that announced it");
}
