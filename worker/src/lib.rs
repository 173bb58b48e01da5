//! grove-worker: the node engine (registration, MQTT, resource reports, containerd runtime).
//! Not built yet: see issue "Worker node engine".
