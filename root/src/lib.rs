//! grove-root: the root orchestrator (replicated System Manager, Oakestra REST API, root
//! scheduler, cluster dispatch). Not built yet: see issue "Root orchestrator".
