//! grove-chaos: fault injection and history checking against a real Grove topology. Not built
//! yet: see issue "Chaos harness".
