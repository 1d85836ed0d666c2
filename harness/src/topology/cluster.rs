//! The `cluster` topology: a real external control plane. Placeholder until
//! the connection code lands.
