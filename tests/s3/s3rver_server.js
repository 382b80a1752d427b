#!/usr/bin/env node
// Runs the s3rver npm package (scripts/setup installs it in .deps/s3rver) as
// the S3 test server, with what s3rver 3.7 lacks and walship needs tested:
//
// - SigV4 header signatures are verified, with this file's own independent
//   implementation: s3rver 3.7 checks only that the access key id exists and
//   accepts any V4 signature. A wrong secret gets 403 SignatureDoesNotMatch,
//   an unknown key 403 InvalidAccessKeyId, and a body that does not match
//   x-amz-content-sha256 400 XAmzContentSHA256Mismatch, as AWS answers.
// - `If-None-Match: *` on PutObject and CompleteMultipartUpload, atomically
//   (412 PreconditionFailed), as AWS does since 2024. s3rver ignores it;
//   --no-conditional-writes keeps that behaviour, to test walship's fallback.
// - AbortMultipartUpload (s3rver answers 405), so aborted uploads leave
//   nothing in the server's directory.
// - ListObjectsV2 past the first page on Node 17+ (see the DES note below).
// - DeleteObjects with Content-MD5 checked, and without s3rver's 500 when a
//   batch empties a directory.
// - Read-after-write: s3rver answered PUTs before the file was written.
//
// With --credentials-file PATH, the access keys in that JSON file,
// {"ACCESS_KEY_ID": {"secret": "...", "token": "..."}, ...}, are accepted
// too, as temporary credentials are: re-read on every request (a missing or
// unparsable file counts as empty), so keys written there by
// tests/aws/aws_test_server.py are valid while listed and revoked once
// dropped (403 InvalidAccessKeyId). A request with such a key must carry its
// token in a signed x-amz-security-token header (else 403 InvalidToken).
//
// With --tls-cert and --tls-key it serves HTTPS. Prints "s3rver listening on
// 127.0.0.1:PORT" on stdout once it accepts connections; logs go to stderr. GET /_walship/stats returns request counts
// as JSON (connections, requests, puts, multipart_uploads, parts, completed,
// aborted, refused_412).
// Stops on SIGTERM/SIGINT.
//
//   s3rver_server.js --directory DIR [--port N] [--bucket NAME]...
//       [--access-key-id ID --secret-access-key SECRET] [--session-token T]
//       [--credentials-file PATH]
//       [--no-conditional-writes] [--service-endpoint NAME] [--tls-cert PEM --tls-key PEM]
//       [--region R]   (requests signed for another region: 400 AuthorizationHeaderMalformed, as AWS)
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Readable, Transform } = require('stream');
const { pipeline } = require('stream/promises');

// s3rver 3.7 encrypts ListObjectsV2 continuation tokens with single DES,
// which OpenSSL 3 (Node 17 and later) only has in its legacy provider: every
// second page failed with 500 InternalError. Triple DES with the key repeated
// three times is single DES, and is in the default provider.
for (const name of ['createCipheriv', 'createDecipheriv']) {
  const original = crypto[name];
  crypto[name] = (algorithm, key, iv, ...rest) =>
    algorithm === 'des'
      ? original('des-ede3-cbc', Buffer.concat([key, key, key]), iv, ...rest)
      : original(algorithm, key, iv, ...rest);
}

const s3rverDir =
  process.env.WALSHIP_S3RVER_DIR || path.join(__dirname, '..', '..', '.deps', 's3rver', 'node_modules', 's3rver');
const S3rver = require(s3rverDir);
const AWSAccount = require(path.join(s3rverDir, 'lib', 'models', 'account'));
const FilesystemStore = require(path.join(s3rverDir, 'lib', 'stores', 'filesystem'));

// s3rver 3.7 answers a PUT (object or part) once its hashing stream has seen
// the last byte, before the file stream has written it: a GET, a listing or
// a CompleteMultipartUpload right after could see a short file. These wait
// for the file, so a 200 means what S3's does: written. And s3rver writes the
// object's own file, so a GET or a listing during the PUT saw it short (empty,
// even): the body goes to a temp file renamed over the object once whole, so
// a reader sees the old object or the new one, as on S3. (The temp name does
// not end in "._S3rver_object": listings pass it over.)
let tempCount = 0;
async function writeStreamed(content, filePath) {
  await fs.promises.mkdir(path.dirname(filePath), { recursive: true });
  const md5 = crypto.createHash('md5');
  let size = 0;
  const temp = `${filePath}.${process.pid}-${++tempCount}.tmp`;
  try {
    await pipeline(
      Buffer.isBuffer(content) ? Readable.from([content]) : content,
      new Transform({
        transform(chunk, encoding, callback) {
          md5.update(chunk);
          size += chunk.length;
          callback(null, chunk);
        },
      }),
      fs.createWriteStream(temp),
    );
    await fs.promises.rename(temp, filePath);
  } catch (err) {
    await fs.promises.rm(temp, { force: true });
    throw err;
  }
  return { size, md5: md5.digest('hex') };
}

FilesystemStore.prototype.putObject = async function putObject(object) {
  const { size, md5 } = await writeStreamed(object.content, this.getResourcePath(object.bucket, object.key, 'object'));
  await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  return { size, md5 };
};

FilesystemStore.prototype.putPart = async function putPart(bucket, uploadId, partNumber, content) {
  const partPath = path.join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, partNumber.toString());
  const { size, md5 } = await writeStreamed(content, partPath);
  await fs.promises.writeFile(`${partPath}.md5`, md5);
  return { size, md5 };
};

function parseArgs(argv) {
  const options = {
    directory: undefined,
    port: 0,
    buckets: [],
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    sessionToken: '',
    conditionalWrites: true,
    serviceEndpoint: 'localhost',
    region: '',
  };
  for (let i = 0; i < argv.length; ++i) {
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--directory': options.directory = next(); break;
      case '--port': options.port = Number(next()); break;
      case '--bucket': options.buckets.push(next()); break;
      case '--access-key-id': options.accessKeyId = next(); break;
      case '--secret-access-key': options.secretAccessKey = next(); break;
      case '--session-token': options.sessionToken = next(); break;
      case '--credentials-file': options.credentialsFile = next(); break;
      case '--no-conditional-writes': options.conditionalWrites = false; break;
      case '--service-endpoint': options.serviceEndpoint = next(); break;
      case '--region': options.region = next(); break;
      case '--tls-cert': options.tlsCert = next(); break;
      case '--tls-key': options.tlsKey = next(); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!options.directory) throw new Error('--directory is required');
  return options;
}

function xmlEscape(text) {
  return String(text).replace(/[<>&'"]/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);
}

function sendError(ctx, status, code, message, extra = {}) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>` +
    Object.entries(extra).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join('') +
    `<RequestId>${crypto.randomBytes(8).toString('hex')}</RequestId></Error>`;
}

// AWS's UriEncode: every byte but A-Za-z0-9-._~ as %XX (upper case).
function uriEncode(text, encodeSlash) {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (c === '/' && !encodeSlash)) out += c;
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

// Returns undefined when the request is signed right, else [status, code, message].
// keys: access key id -> secret; tokens: access key id -> required session token ('' for none).
function checkSignature(req, body, keys, tokens, bucketRegion) {
  const header = req.headers['authorization'];
  if (!header) return [403, 'AccessDenied', 'Anonymous access is forbidden for this test server'];
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(header);
  if (!match) return [400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed'];
  const [, accessKeyId, date, region, service, signedHeaders, signature] = match;
  if (!keys.has(accessKeyId)) {
    return [403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
  }
  if (bucketRegion && region !== bucketRegion) {
    return [400, 'AuthorizationHeaderMalformed',
      `The authorization header is malformed; the region '${region}' is wrong; expecting '${bucketRegion}'`,
      { Region: bucketRegion }];
  }
  const amzDate = req.headers['x-amz-date'] || '';
  if (!amzDate.startsWith(date)) return [403, 'SignatureDoesNotMatch', 'x-amz-date does not match the credential date'];
  const names = signedHeaders.split(';');
  for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
    if (!names.includes(required)) return [403, 'SignatureDoesNotMatch', `${required} is not signed`];
  }
  const sessionToken = tokens.get(accessKeyId);
  if (sessionToken) {
    if (req.headers['x-amz-security-token'] !== sessionToken || !names.includes('x-amz-security-token')) {
      return [403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.'];
    }
  }
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (payloadHash !== 'UNSIGNED-PAYLOAD') {
    const actual = crypto.createHash('sha256').update(body).digest('hex');
    if (actual !== payloadHash) {
      return [400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed."];
    }
  }
  const [rawPath, rawQuery = ''] = req.url.split(/\?(.*)/s);
  const query = rawQuery === '' ? [] : rawQuery.split('&').map(pair => {
    const eq = pair.indexOf('=');
    const name = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
    return [uriEncode(name, true), uriEncode(value, true)];
  });
  query.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const canonicalHeaders = names
    .map(name => `${name}:${String(req.headers[name] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonicalRequest = [
    req.method,
    rawPath,
    query.map(([n, v]) => `${n}=${v}`).join('&'),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    `${date}/${region}/${service}/aws4_request`,
    crypto.createHash('sha256').update(canonicalRequest, 'utf8').digest('hex'),
  ].join('\n');
  let key = hmac('AWS4' + keys.get(accessKeyId), date);
  key = hmac(key, region);
  key = hmac(key, service);
  key = hmac(key, 'aws4_request');
  const expected = crypto.createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex');
  if (expected !== signature) {
    return [403, 'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.'];
  }
  return undefined;
}

function xmlUnescape(text) {
  return text.replace(/&(lt|gt|amp|apos|quot);/g, (_, e) => ({ lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' })[e]);
}

// DeleteObjects as S3 does it: Content-MD5 required and checked. s3rver's
// own deletes every key at once, and its concurrent removal of emptied
// directories fails (500) when a batch empties one; these go one by one.
async function deleteObjects(ctx, store, bucket) {
  const body = ctx.state.rawBody;
  const md5 = ctx.get('content-md5');
  if (!md5) return sendError(ctx, 400, 'InvalidRequest', 'Missing required header for this request: Content-MD5');
  if (crypto.createHash('md5').update(body).digest('base64') !== md5) {
    return sendError(ctx, 400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
  }
  if (!(await store.getBucket(bucket))) {
    return sendError(ctx, 404, 'NoSuchBucket', 'The specified bucket does not exist');
  }
  const text = body.toString('utf8');
  const keys = [...text.matchAll(/<Key>([^<]*)<\/Key>/g)].map(m => xmlUnescape(m[1]));
  if (keys.length > 1000) return sendError(ctx, 400, 'MalformedXML', 'More than 1000 keys in one request');
  const quiet = /<Quiet>true<\/Quiet>/.test(text);
  for (const key of keys) {
    if (await store.existsObject(bucket, key)) await store.deleteObject(bucket, key);
  }
  ctx.status = 200;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    (quiet ? '' : keys.map(k => `<Deleted><Key>${xmlEscape(k)}</Key></Deleted>`).join('')) +
    '</DeleteResult>';
  return undefined;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// The keys of --credentials-file, read now: {id: {secret, token}}.
function readCredentialsFile(file) {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
  } catch (err) {
    // missing or unparsable (being replaced): no keys
  }
  return {};
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const keys = new Map([[options.accessKeyId, options.secretAccessKey]]);
  const tokens = new Map([[options.accessKeyId, options.sessionToken]]);
  // s3rver checks that the access key id exists in its registry.
  AWSAccount.DUMMY_ACCOUNT.createKeyPair(options.accessKeyId, options.secretAccessKey);

  const server = new S3rver({
    address: '127.0.0.1',
    port: options.port,
    directory: options.directory,
    silent: true,
    serviceEndpoint: options.serviceEndpoint,
    configureBuckets: options.buckets.map(name => ({ name })),
    ...(options.tlsCert ? { cert: fs.readFileSync(options.tlsCert), key: fs.readFileSync(options.tlsKey) } : {}),
  });
  const inFlight = new Set();  // bucket/key of conditional writes under way

  // Runs before s3rver's own middleware (and its path rewriting for
  // virtual-hosted requests), so the signature is checked on the request as sent.
  const stats = { connections: 0, requests: 0, puts: 0, multipart_uploads: 0, parts: 0, completed: 0, aborted: 0,
    refused_412: 0 };
  server.middleware.unshift(async (ctx, next) => {
    if (ctx.path === '/_walship/stats') {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(stats);
      return undefined;
    }
    ++stats.requests;
    const body = await readBody(ctx.req);
    let requestKeys = keys;
    let requestTokens = tokens;
    if (options.credentialsFile) {
      requestKeys = new Map(keys);
      requestTokens = new Map(tokens);
      for (const [id, entry] of Object.entries(readCredentialsFile(options.credentialsFile))) {
        if (requestKeys.has(id) || !entry || typeof entry.secret !== 'string') continue;
        requestKeys.set(id, entry.secret);
        // A temporary credential always needs its token: a missing one matches no header.
        requestTokens.set(id, typeof entry.token === 'string' && entry.token ? entry.token : '\0');
      }
    }
    const failure = checkSignature(ctx.req, body, requestKeys, requestTokens, options.region);
    if (failure) return sendError(ctx, ...failure);
    const accessKeyId = /Credential=([^/]+)\//.exec(ctx.req.headers['authorization'])[1];
    // s3rver checks that the access key id exists in its registry.
    if (!keys.has(accessKeyId)) AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKeyId, requestKeys.get(accessKeyId));
    if (ctx.method === 'PUT') ctx.query.partNumber ? ++stats.parts : ++stats.puts;
    if (ctx.method === 'POST' && 'uploads' in ctx.query) ++stats.multipart_uploads;
    if (ctx.method === 'POST' && 'uploadId' in ctx.query) ++stats.completed;
    if (ctx.method === 'DELETE' && 'uploadId' in ctx.query) ++stats.aborted;
    // s3rver's controllers read the body from ctx.req: give them what was read.
    ctx.state.rawBody = body;
    const replay = Readable.from(body.length ? [body] : []);
    replay.headers = ctx.req.headers;
    ctx.req = replay;
    return next();
  });

  // After s3rver's vhost rewriting: ctx.path is /bucket/key for both styles.
  const vhostIndex = server.middleware.findIndex(fn => fn.name === 'vhost');
  server.middleware.splice(vhostIndex + 1, 0, async (ctx, next) => {
    const [, deleteBucket] = /^\/([^/]+)\/?$/.exec(ctx.path) || [];
    if (deleteBucket && ctx.method === 'POST' && 'delete' in ctx.query) {
      return deleteObjects(ctx, server.store, deleteBucket);
    }
    const [, bucket, key] = /^\/([^/]+)\/(.+)$/s.exec(ctx.path) || [];
    if (!bucket || !key) return next();
    const objectKey = decodeURIComponent(key);
    if (ctx.method === 'DELETE' && 'uploadId' in ctx.query) {
      const dir = path.join(server.store.getResourcePath(bucket, undefined, 'uploads'), String(ctx.query.uploadId));
      if (!fs.existsSync(dir)) return sendError(ctx, 404, 'NoSuchUpload', 'The specified upload does not exist.');
      await fs.promises.rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      return undefined;
    }
    const conditional =
      options.conditionalWrites && ctx.get('if-none-match') === '*' &&
      ((ctx.method === 'PUT' && !('uploadId' in ctx.query) && !ctx.get('x-amz-copy-source')) ||
       (ctx.method === 'POST' && 'uploadId' in ctx.query));
    if (!conditional) return next();
    // Claimed before the first await, so two racing writers never both pass.
    const id = `${bucket}/${objectKey}`;
    const refuse = () =>
      ++stats.refused_412 &&
      sendError(ctx, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
    if (inFlight.has(id)) return refuse();
    inFlight.add(id);
    try {
      if (await server.store.existsObject(bucket, objectKey)) return refuse();
      return await next();
    } finally {
      inFlight.delete(id);
    }
  });

  const address = await server.run();
  // Node closes idle keep-alive connections after 5 s, and a client that
  // reuses one at that moment sees a reset: real S3 keeps them far longer.
  server.httpServer.on('connection', () => ++stats.connections);
  server.httpServer.keepAliveTimeout = 120000;
  server.httpServer.headersTimeout = 125000;
  process.stdout.write(`s3rver listening on 127.0.0.1:${address.port}\n`);
  const stop = () => server.close().then(() => process.exit(0), () => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(err => {
  process.stderr.write(`s3rver_server: ${err.stack || err}\n`);
  process.exit(1);
});
