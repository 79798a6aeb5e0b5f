// A relying party built on node `openid-client` and `jose`, driven by
// tests/web/test_oidc_node.py against a live `authstate serve`.
// Env: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_URI, EMAIL, PASSWORD,
// RECEIVER_PORT (its back-channel logout endpoint listens there).
// It prints one JSON line per step; "WAITING_FOR_REVOKE" asks the test to revoke the
// user by another path; the last line is {"ok": true} or the script exits non-zero.
import * as client from 'openid-client';
import * as jose from 'jose';
import http from 'node:http';
import assert from 'node:assert/strict';

const env = process.env;
const issuer = new URL(env.ISSUER);
const say = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));

// --- the back-channel logout receiver: validates every logout token with jose ---
const jwks = jose.createRemoteJWKSet(new URL('/.well-known/jwks.json', issuer));
const received = [];
let waiter = null;
const server = http.createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  try {
    const token = new URLSearchParams(body).get('logout_token');
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer: env.ISSUER, audience: env.CLIENT_ID, typ: 'logout+jwt',
      requiredClaims: ['iat', 'exp', 'jti', 'sub', 'sid'],
    });
    assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
    assert.equal(payload.nonce, undefined);
    received.push({ payload, alg: protectedHeader.alg });
    res.writeHead(200).end();
    if (waiter) waiter();
  } catch (error) {
    say('bad_logout_token', { error: String(error) });
    res.writeHead(400).end();
  }
});
await new Promise((ok) => server.listen(Number(env.RECEIVER_PORT), '127.0.0.1', ok));

function logoutToken(count, ms = 20000) {
  if (received.length >= count) return Promise.resolve(received[count - 1]);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('no logout token arrived')), ms);
    waiter = () => { if (received.length >= count) { clearTimeout(timer); ok(received[count - 1]); } };
  });
}

// --- a browser, with plain HTTP requests: cookies kept by hand, redirects followed ---
const jar = new Map();
async function visit(url, init = {}) {
  const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie } });
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const [name, value] = [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)];
    if (attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '' || value === '""') jar.delete(name.trim());
    else jar.set(name.trim(), value);
  }
  return res;
}
const field = (html, name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1].replaceAll('&amp;', '&');

async function login(authorizationUrl) {
  // the service's own login page, then back to /oauth/authorize, then to the app
  let res = await visit(authorizationUrl);
  if (res.status === 303) {
    const page = await visit(new URL(res.headers.get('location'), issuer));
    const html = await page.text();
    const form = new URLSearchParams({ csrf_token: field(html, 'csrf_token'), next: field(html, 'next'),
      email: env.EMAIL, password: env.PASSWORD });
    res = await visit(new URL('/login', issuer), { method: 'POST', body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: issuer.origin } });
    assert.equal(res.status, 303, 'login');
    res = await visit(new URL(res.headers.get('location'), issuer));
  }
  assert.equal(res.status, 302, 'authorize');
  return new URL(res.headers.get('location'));
}

// --- discovery, code + PKCE, id_token, userinfo, refresh ---
const config = await client.discovery(issuer, env.CLIENT_ID, env.CLIENT_SECRET, undefined,
  { execute: [client.allowInsecureRequests] });
assert.equal(config.serverMetadata().end_session_endpoint, `${env.ISSUER}/oauth/logout`);
say('discovered');

async function signIn() {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: env.REDIRECT_URI, scope: 'openid email profile', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const back = await login(url);
  const tokens = await client.authorizationCodeGrant(config, back, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  return tokens;
}

const tokens = await signIn();
const claims = tokens.claims();
assert.equal(claims.aud, env.CLIENT_ID);
assert.equal(claims.email, env.EMAIL);
assert.ok(claims.sid && claims.auth_time && claims.at_hash);
say('code_flow', { sub: claims.sub, alg: jose.decodeProtectedHeader(tokens.id_token).alg });

const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
assert.equal(info.email, env.EMAIL);
say('userinfo');

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
assert.ok(refreshed.access_token && refreshed.access_token !== tokens.access_token);
const again = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
assert.equal(again.sub, claims.sub);
say('refresh');

// --- RP-initiated logout: the browser visits end_session with the id_token_hint ---
const endUrl = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token, post_logout_redirect_uri: env.POST_LOGOUT_URI, state: 'bye',
});
const out = await visit(endUrl);
assert.equal(out.status, 303);
assert.equal(out.headers.get("location"), `${env.POST_LOGOUT_URI}&state=bye`);
const first = await logoutToken(1);
assert.equal(first.payload.sid, claims.sid);
assert.equal(first.payload.sub, claims.sub);
say('rp_logout_backchannel', { sid: first.payload.sid });

// --- a logout by another path (the test revokes the user) reaches us too ---
jar.clear();
const second = (await signIn()).claims();
assert.notEqual(second.sid, claims.sid);
say('WAITING_FOR_REVOKE');
const token = await logoutToken(2);
assert.equal(token.payload.sid, second.sid);
say('revoke_backchannel', { sid: token.payload.sid });

server.close();
console.log(JSON.stringify({ ok: true }));
