//! grove-cluster: the cluster orchestrator (replicated cluster manager, embedded MQTT broker,
//! worker contract, cluster scheduler). Not built yet: see issue "Cluster orchestrator".
