// A real OpenID Provider for the SSO tests: the npm package `oidc-provider` (OpenID
// Certified), on loopback, with one confidential client for the origin.
//
//   node tests/idp/oidc-provider.mjs PORT KEYS_FILE CLIENT_ID CLIENT_SECRET REDIRECT_URI[,URI...] [--rotate]
//
// KEYS_FILE holds the provider's private JWKS (RSA): created on first start; `--rotate`
// puts a new key in front (it signs from then on, the old one is still published) —
// a provider key rotation across a restart.
//
// Accounts: any login works (devInteractions); login `x` is `x@example.com`, a login with
// an `@` is that address; logins starting with `unverified` have email_verified=false.
// Every login reports how the user signed in (the ID token's `amr`, RFC 8176): logins
// starting with `mfa` as `["pwd", "otp"]` (a second factor at the provider), the others
// as `["pwd"]`.
// (`amr` and `auth_time` are claims of the `openid` scope below: oidc-provider only puts
// into an ID token the claims its configuration names.)
//
// Test hook: POST /__test/tamper {"claims": {...}, "exp_offset": N} makes the next token
// response carry an ID token with those claims changed (re-signed with the provider's
// own current key, so only the claim checks can catch it). It exists only in this test
// script, never in Gatehouse.
import fs from 'node:fs';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, importJWK, SignJWT } from 'jose';

const [port, keysFile, clientId, clientSecret, redirects, flag] = process.argv.slice(2);
if (!port || !keysFile || !clientId || !clientSecret || !redirects) {
  console.error('usage: oidc-provider.mjs PORT KEYS_FILE CLIENT_ID CLIENT_SECRET REDIRECT_URIS [--rotate]');
  process.exit(2);
}

async function newKey() {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = `k${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  return jwk;
}

let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')).keys : [];
if (keys.length === 0 || flag === '--rotate') {
  keys = [await newKey(), ...keys];
  fs.writeFileSync(keysFile, JSON.stringify({ keys }));
}

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirects.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub', 'amr', 'auth_time'], email: ['email', 'email_verified'], profile: ['name'] },
  cookies: { keys: ['gatehouse-test-cookie-key-0123456789'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    async claims() {
      const email = id.includes('@') ? id : `${id}@example.com`;
      return { sub: id, email, email_verified: !id.startsWith('unverified'), name: `User ${id}` };
    },
  }),
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;

let tamper = null;

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

// The authentication methods a login reports (see the header).
const amrOf = (login) => (login.startsWith('mfa') ? ['pwd', 'otp'] : ['pwd']);

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = await readJson(ctx.req);
    ctx.body = { ok: true };
    return;
  }
  // The devInteractions login form: finished here so the login carries `amr` (the
  // built-in submit records only the account). Other prompts go on to it with the body
  // already read (oidc-provider then parses `req.body`).
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    const form = new URLSearchParams(text);
    if (form.get('prompt') === 'login' && form.get('login')) {
      const accountId = form.get('login');
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId, amr: amrOf(accountId) } }, {
        mergeWithLastSubmission: false,
      });
      return;
    }
    ctx.req.body = text;
  }
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    const t = tamper;
    tamper = null;
    const payload = JSON.parse(Buffer.from(ctx.body.id_token.split('.')[1], 'base64url').toString('utf8'));
    Object.assign(payload, t.claims || {});
    if (typeof t.exp_offset === 'number') {
      const now = Math.floor(Date.now() / 1000);
      payload.exp = now + t.exp_offset;
      payload.iat = Math.min(payload.iat, payload.exp - 60);
    }
    const signing = keys[0];
    const key = await importJWK(signing, 'RS256');
    ctx.body.id_token = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', kid: signing.kid })
      .sign(key);
  }
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer} (signing kid ${keys[0].kid})`);
});
