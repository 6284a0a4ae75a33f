use super::*;

const LIMITS: SlotLimits = SlotLimits {
    capacity: 3,
    idle_ms: 1_000,
    frame_ms: 100,
};

fn owed(owed: usize) -> Activity {
    Activity {
        owed,
        ..Activity::default()
    }
}

#[test]
fn a_full_table_evicts_the_stalest_connection_first() {
    let mut slots = Slots::new(LIMITS);
    assert_eq!(slots.admit(0, 1), Admission::Admitted);
    assert_eq!(slots.admit(5, 2), Admission::Admitted);
    assert_eq!(slots.admit(10, 3), Admission::Admitted);
    // 1 completes a frame later than the others: 2 is now the stalest.
    slots.observe(
        20,
        1,
        Activity {
            progressed: true,
            ..Activity::default()
        },
    );
    assert_eq!(slots.admit(30, 4), Admission::Evicted(2));
    assert!(!slots.contains(2) && slots.contains(4));
    assert_eq!(slots.len(), 3);
}

#[test]
fn trickled_bytes_are_no_progress() {
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    slots.admit(1, 2);
    // 1 trickles bytes of a header that never completes; 2 stays silent.
    for now in [10, 20, 30] {
        let trickle = Activity {
            partial: true,
            ..Activity::default()
        };
        slots.observe(now, 1, trickle);
    }
    slots.admit(40, 3);
    assert_eq!(slots.admit(41, 4), Admission::Evicted(1));
}

#[test]
fn ties_go_to_the_oldest_and_the_newcomer_is_kept() {
    let mut slots = Slots::new(LIMITS);
    for key in 1..=3 {
        slots.admit(7, key);
    }
    assert_eq!(slots.admit(7, 4), Admission::Evicted(1));
    assert_eq!(slots.admit(7, 5), Admission::Evicted(2));
    assert_eq!(slots.stalest(), Some(3));
}

#[test]
fn connections_the_server_owes_are_never_evicted_so_the_newcomer_is_refused() {
    let mut slots = Slots::new(LIMITS);
    for key in 1..=3 {
        slots.admit(0, key);
        slots.observe(0, key, owed(1));
    }
    assert_eq!(slots.admit(50, 4), Admission::Refused);
    assert!(!slots.contains(4));
    // Owed answers have no deadline here: the server's own deadlines bound them.
    assert_eq!(slots.next_deadline(), None);
    assert!(slots.expired(1_000_000).is_empty());
    // Once answered, 2 is evictable again.
    slots.observe(60, 2, owed(0));
    assert_eq!(slots.admit(61, 4), Admission::Evicted(2));
}

#[test]
fn idle_connections_expire_after_the_idle_deadline() {
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    slots.admit(500, 2);
    assert_eq!(slots.next_deadline(), Some(1_000));
    assert!(slots.expired(999).is_empty());
    assert_eq!(slots.expired(1_000), vec![1]);
    slots.remove(1);
    assert_eq!(slots.next_deadline(), Some(1_500));
}

#[test]
fn a_frame_has_one_deadline_from_its_first_byte() {
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    let partial = Activity {
        partial: true,
        ..Activity::default()
    };
    slots.observe(10, 1, partial);
    // More bytes of the same frame do not move its deadline.
    slots.observe(60, 1, partial);
    slots.observe(105, 1, partial);
    assert_eq!(slots.next_deadline(), Some(110));
    assert_eq!(slots.expired(110), vec![1]);

    // A frame that completes and a next one that starts get a fresh clock.
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    slots.observe(10, 1, partial);
    let whole_then_partial = Activity {
        progressed: true,
        partial: true,
        ..Activity::default()
    };
    slots.observe(90, 1, whole_then_partial);
    assert_eq!(slots.next_deadline(), Some(190));
}

#[test]
fn a_partial_frame_waits_while_the_server_owes_an_answer() {
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    let pipelined = Activity {
        progressed: true,
        partial: true,
        owed: 1,
        unsent: false,
    };
    slots.observe(10, 1, pipelined);
    assert_eq!(slots.next_deadline(), None);
    // Answered: the peer is the one to move again, from now.
    let answered = Activity {
        progressed: true,
        partial: true,
        ..Activity::default()
    };
    slots.observe(500, 1, answered);
    assert_eq!(slots.next_deadline(), Some(600));
}

#[test]
fn answers_left_unread_are_a_stall() {
    let mut slots = Slots::new(LIMITS);
    slots.admit(0, 1);
    let unread = Activity {
        unsent: true,
        ..Activity::default()
    };
    slots.observe(20, 1, unread);
    slots.observe(50, 1, unread);
    assert_eq!(slots.next_deadline(), Some(120));
    // The peer reads some: progress, a fresh clock.
    let some_read = Activity {
        progressed: true,
        unsent: true,
        ..Activity::default()
    };
    slots.observe(110, 1, some_read);
    assert_eq!(slots.next_deadline(), Some(210));
}
