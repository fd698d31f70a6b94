//! `chorus-sim`: a deterministic discrete-event simulator that will run many copies of the real
//! `chorus-consensus` state machine on a virtual clock, over a simulated network with latency,
//! loss, partitions, churn, clock skew and misbehaving nodes, and report agreement, forks,
//! fairness and traffic. One seed makes a run reproducible. Nothing here yet: the simulator issue
//! brings it.
#![deny(missing_docs)]
