//! Who is asking: the caller authenticated by its bearer token (per identity
//! mode), and what the replicas see of it: the token they are called with and
//! the service account the node claims.

use super::state::State;
use crate::auth::{AuthError, CallerIdentity, Visibility, bearer_token};
use crate::config::IdentityMode;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use proto::node::string_value;
use tonic::Status;

/// Who is asking, as far as answering is concerned.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    /// The caller's own token (passthrough) to forward.
    pub forward_token: Option<String>,
    /// Which proxies syncz, connections and config_dump may show (istiod's
    /// StatusGen rule, allowed namespaces included).
    pub visibility: Visibility,
    /// `Some` when `istio.io/debug` is restricted for this caller (own-identity
    /// mode, caller outside the system namespace: istiod's DebugGen rule).
    pub debug_restricted: Option<CallerIdentity>,
}

impl State {
    /// Who the caller is: its bearer token verified (unless anonymous).
    pub(super) fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, Status> {
        self.defects.before_authentication(metadata);
        let unauthenticated = |e: AuthError| Status::unauthenticated(e.to_string());
        match &self.config.identity {
            IdentityMode::Anonymous { .. } => Ok(Caller {
                forward_token: None,
                visibility: Visibility::All,
                debug_restricted: None,
            }),
            IdentityMode::Passthrough => {
                let token = bearer_token(metadata)
                    .map_err(unauthenticated)?
                    .ok_or_else(|| unauthenticated(AuthError::Missing))?;
                self.verifier.verify(&token).map_err(unauthenticated)?;
                // The replicas see the caller's own token and apply their rules.
                Ok(Caller {
                    forward_token: Some(token),
                    visibility: Visibility::All,
                    debug_restricted: None,
                })
            }
            IdentityMode::OwnIdentity(own) => {
                let token = bearer_token(metadata)
                    .map_err(unauthenticated)?
                    .ok_or_else(|| unauthenticated(AuthError::Missing))?;
                let who = self.verifier.verify(&token).map_err(unauthenticated)?;
                let visibility =
                    Visibility::of(&who, &own.system_namespace, &own.allowed_namespaces);
                tracing::debug!(caller = ?who, ?visibility, "authenticated caller");
                // DebugGen exempts the system namespace only, not the allowed
                // ones (1.30.0:pilot/pkg/xds/debuggen.go parseAndValidateDebugRequest).
                let debug_restricted = (who.namespace != own.system_namespace).then_some(who);
                Ok(Caller {
                    forward_token: None,
                    visibility,
                    debug_restricted,
                })
            }
        }
    }

    /// The token replicas are called with.
    pub(super) fn upstream_token(&self, caller: &Caller) -> Result<Option<String>, Status> {
        let file = match &self.config.identity {
            IdentityMode::Passthrough => return Ok(caller.forward_token.clone()),
            IdentityMode::Anonymous { token_file } => token_file.as_ref(),
            IdentityMode::OwnIdentity(own) => own.token_file.as_ref(),
        };
        match file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the proxy's token file");
                    Status::internal(format!(
                        "istioctl-proxy cannot read its own token file {}: {e}",
                        path.display()
                    ))
                }),
        }
    }

    /// When the proxy calls with its own credentials, the node claims the
    /// proxy's service account (istiod checks the claim against the
    /// authenticated identity): the one its token names, else the configured one.
    pub(super) fn upstream_request(
        &self,
        mut req: DiscoveryRequest,
        token: Option<&str>,
    ) -> DiscoveryRequest {
        let from_token = || token.and_then(crate::auth::unverified_identity);
        let claim = match &self.config.identity {
            IdentityMode::Passthrough => None,
            IdentityMode::Anonymous { .. } => from_token(),
            IdentityMode::OwnIdentity(own) => {
                Some(from_token().unwrap_or_else(|| crate::auth::CallerIdentity {
                    namespace: own.namespace.clone(),
                    service_account: own.service_account.clone(),
                }))
            }
        };
        if let (Some(claim), Some(node)) = (claim, req.node.as_mut()) {
            let md = node.metadata.get_or_insert_with(Default::default);
            md.fields
                .insert("NAMESPACE".into(), string_value(&claim.namespace));
            md.fields.insert(
                "SERVICE_ACCOUNT".into(),
                string_value(&claim.service_account),
            );
        }
        req
    }
}
