//! The ADS `StreamAggregatedResources` server istioctl talks to: any number of
//! requests per stream, each answered once, in order. By concern:
//! - `stream`: one ADS stream: requests read in order, answer slots, the
//!   client reading its answers;
//! - `dispatch`: one request: authorized, then sent where its type goes;
//! - `authenticate`: who the caller is, and the token and node the replicas see;
//! - `authorize`: what the caller may ask (own-identity mode);
//! - `fan_out`: asking every replica and merging their answers;
//! - `single_flight`: identical fan-outs shared;
//! - `config_dump`: config_dump routed to the replica that owns the proxy,
//!   one replica's answer passed through;
//! - `owners`: which replica has which proxy, learned from syncz answers;
//! - `state`: what all of them share.

mod authenticate;
mod authorize;
mod config_dump;
mod dispatch;
mod fan_out;
mod owners;
mod single_flight;
mod state;
mod stream;

pub(crate) use state::State;
pub(crate) use stream::AdsService;
