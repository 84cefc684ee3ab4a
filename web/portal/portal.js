// The customer's privacy portal: Sign-In with Ethereum, consents signed in the wallet
// (eth_signTypedData_v4), and the access log's Merkle proofs checked here against the root that
// AuditAnchor holds, read through the wallet's own provider (eth_call), not from the gateway.
import {
  decodeFunctionResult,
  encodeAbiParameters,
  encodeFunctionData,
  getAddress,
  keccak256,
  sha256,
  stringToBytes,
  stringToHex,
} from "viem";
import { createSiweMessage } from "viem/siwe";
import { api, ApiError, el, say, setCsrf, short, table } from "../shared/api.js";

const ANCHOR_ABI = [
  {
    type: "function",
    name: "batch",
    stateMutability: "view",
    inputs: [{ name: "batchId", type: "uint256" }],
    outputs: [
      {
        name: "",
        type: "tuple",
        components: [
          { name: "root", type: "bytes32" },
          { name: "orgId", type: "uint64" },
          { name: "firstSeq", type: "uint64" },
          { name: "lastSeq", type: "uint64" },
          { name: "count", type: "uint64" },
          { name: "anchoredBlock", type: "uint64" },
        ],
      },
    ],
  },
];

let session = null;

function wallet() {
  if (!window.ethereum) throw new Error("No wallet found in this browser (an EIP-1193 provider such as MetaMask).");
  return window.ethereum;
}

async function signIn() {
  say("signin-status", "Asking your wallet…");
  try {
    const [account] = await wallet().request({ method: "eth_requestAccounts" });
    const request = await api("GET", "/v1/me/session/nonce");
    const message = createSiweMessage({
      domain: request.domain,
      address: getAddress(account),
      statement: request.statement,
      uri: request.uri,
      version: "1",
      chainId: request.chain_id,
      nonce: request.nonce,
      issuedAt: new Date(request.issued_at),
      expirationTime: new Date(request.expiration_time),
    });
    const signature = await wallet().request({ method: "personal_sign", params: [stringToHex(message), account] });
    session = await api("POST", "/v1/me/session", { message, signature });
    await enter();
  } catch (error) {
    say("signin-status", `Sign-in refused: ${error.message}`, "bad");
  }
}

async function signOut() {
  await api("DELETE", "/v1/me/session");
  session = null;
  setCsrf(null);
  document.getElementById("signed-in").classList.add("hidden");
  document.getElementById("signout-button").classList.add("hidden");
  document.getElementById("signin-button").classList.remove("hidden");
  say("signin-status", "Signed out.");
}

async function enter() {
  setCsrf(session.csrf_token);
  say("signin-status", `Signed in as customer ${short(session.customer_id, 14)} with wallet ${session.wallet}.`, "ok");
  document.getElementById("signin-button").classList.add("hidden");
  document.getElementById("signout-button").classList.remove("hidden");
  document.getElementById("signed-in").classList.remove("hidden");
  document.getElementById("wallet-text").textContent = `Your registered wallet is ${session.wallet}.`;
  await Promise.all([showMe(), showConsents(), showAccessLog(), showLoyalty(), showErasure()]);
}

async function showMe() {
  const me = await api("GET", "/v1/me");
  const target = document.getElementById("me");
  const profile = Object.entries(me.record.profile).map(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v)]);
  target.replaceChildren(
    table(
      ["Organisation", "Record version", ""],
      me.organisations.map((o) => [`${o.name} (${o.org_id})`, String(o.record_version), o.is_this_gateway ? "This portal's organisation" : ""]),
      "Organisations that hold a record of you",
    ),
    el("h3", {}, `What organisation ${me.gateway_org_id} holds about you`),
    el("dl", { id: "record" }, profile.flat()),
  );
}

function stateText(item) {
  if (!item.purpose_active) return item.granted ? "Granted (purpose retired)" : "Purpose retired";
  if (item.granted) return "Granted";
  if (item.reason === "revoked") return "Revoked";
  if (item.reason === "notice_changed") return "Not granted (the notice changed since)";
  if (item.reason === "expired") return "Expired";
  return "Not granted";
}

async function showConsents() {
  const data = await api("GET", "/v1/me/consents");
  const rows = data.items.map((item) => {
    const label = `${item.granted ? "Revoke" : "Grant"} consent to purpose ${short(item.purpose_id)} for ${item.org_name}`;
    const button = !item.purpose_active && !item.granted ? el("span", { class: "muted" }, "cannot be granted") : el(
      "button",
      { type: "button", "aria-label": label, "data-purpose": item.purpose_id, "data-org": item.org_id, onclick: () => change(item, !item.granted) },
      item.granted ? "Revoke" : "Grant",
    );
    const receipt = item.receipt_id
      ? el("a", { href: `/v1/me/consents/receipts/${item.receipt_id}?download=true`, download: true }, "Receipt")
      : el("span", { class: "muted" }, "none yet");
    const history = el(
      "details",
      {},
      el("summary", {}, `History (${item.history.length})`),
      el("ul", {}, item.history.map((h) => el("li", {}, `${h.time}: ${h.granted ? "granted" : "revoked"} (notice v${h.purpose_version}, block ${h.block_number}) `, el("a", { href: `/v1/me/consents/receipts/${h.receipt_id}?download=true`, download: true }, "receipt")))),
    );
    return [`${item.org_name} (${item.org_id})`, el("code", { title: item.purpose_id }, short(item.purpose_id)), `v${item.notice_version}`, el("strong", { class: item.granted ? "ok" : "" }, stateText(item)), button, receipt, history];
  });
  document.getElementById("consents").replaceChildren(
    table(["Organisation", "Purpose", "Notice", "State", "Change", "Receipt", "History"], rows, `As of block ${data.as_of_block}`),
  );
}

async function change(item, granted) {
  const verb = granted ? "grant" : "revoke";
  say("consents-status", `Sign the ${verb} in your wallet…`);
  try {
    const query = new URLSearchParams({ purpose_id: item.purpose_id, org_id: item.org_id, granted });
    const typed = await api("GET", `/v1/me/consents/typed-data?${query}`);
    const signature = await wallet().request({ method: "eth_signTypedData_v4", params: [session.wallet, JSON.stringify(typed)] });
    const m = typed.message;
    const operation = await api("POST", "/v1/me/consents", {
      customer_id: m.customerId, purpose_id: m.purposeId, purpose_version: m.purposeVersion, org_id: m.orgId, granted: m.granted,
      expires_at: m.expiresAt, nonce: m.nonce, deadline: m.deadline, signature,
    });
    if (operation.status !== "confirmed") throw new Error(`the change is ${operation.status}${operation.error ? `: ${operation.error.name}` : ""}`);
    await showConsents();
    say("consents-status", `Consent ${granted ? "granted" : "revoked"}: block ${operation.block_number}, transaction ${short(operation.tx_hash, 14)}.`, "ok");
  } catch (error) {
    say("consents-status", `Not changed: ${error.message}`, "bad");
  }
}

// --- the access log's proofs, checked here ------------------------------------------------

function entryHash(entry, version) {
  // The log's canonical encoding (store/audit.py): a compact JSON array, SHA-256.
  const canonical = JSON.stringify([
    version, entry.seq, entry.at_canonical, entry.api_key_id, entry.org_id, entry.account,
    entry.customer_id, entry.purpose, entry.action, entry.decision, entry.reason, entry.prev_hash ?? "",
  ]);
  return sha256(stringToBytes(canonical));
}

function leafOf(seq, hash) {
  return keccak256(keccak256(encodeAbiParameters([{ type: "uint256" }, { type: "bytes32" }], [BigInt(seq), hash])));
}

function processProof(leaf, proof) {
  let node = leaf.toLowerCase();
  for (const sibling of proof) {
    const s = sibling.toLowerCase();
    node = keccak256(node < s ? `${node}${s.slice(2)}` : `${s}${node.slice(2)}`);
  }
  return node;
}

async function rootOnChain(contract, batchId) {
  const data = encodeFunctionData({ abi: ANCHOR_ABI, functionName: "batch", args: [BigInt(batchId)] });
  const result = await wallet().request({ method: "eth_call", params: [{ to: contract, data }, "latest"] });
  return decodeFunctionResult({ abi: ANCHOR_ABI, functionName: "batch", data: result });
}

async function verify(entry, log) {
  const hash = entryHash(entry, log.hash_version);
  if (hash.slice(2) !== entry.entry_hash) return { ok: false, text: "The entry does not match its hash" };
  if (!entry.anchor_proof) return { ok: null, text: "Not anchored yet" };
  const proof = entry.anchor_proof;
  const computed = processProof(leafOf(entry.seq, hash), proof.proof);
  const batch = await rootOnChain(log.anchor_contract, proof.batch.id);
  if (batch.root.toLowerCase() !== computed) return { ok: false, text: `Proof does not lead to the root of batch ${proof.batch.id} on the chain` };
  if (Number(batch.orgId) !== log.org_id || entry.seq < Number(batch.firstSeq) || entry.seq > Number(batch.lastSeq)) {
    return { ok: false, text: `Batch ${proof.batch.id} on the chain is not this organisation's or does not cover entry ${entry.seq}` };
  }
  return { ok: true, text: `Verified: in batch ${proof.batch.id}, root ${short(batch.root, 10)} read from the chain` };
}

async function showAccessLog() {
  say("access-status", "Checking proofs…");
  try {
    const log = await api("GET", "/v1/me/access-log");
    const chainId = Number(await wallet().request({ method: "eth_chainId" }));
    if (chainId !== log.chain_id) throw new Error(`your wallet is on chain ${chainId}, the log is anchored on chain ${log.chain_id}`);
    const rows = [];
    let verified = 0;
    for (const entry of log.entries) {
      const result = await verify(entry, log);
      if (result.ok) verified += 1;
      const cls = result.ok === true ? "ok proof" : result.ok === false ? "bad proof" : "muted proof";
      rows.push([
        entry.at_canonical.replace("T", " ").slice(0, 19) + " UTC", entry.org_id === null ? "" : `organisation ${entry.org_id}`, entry.role ?? (entry.api_key_id ? "API key" : "you"),
        entry.purpose ?? "", entry.action, el("strong", {}, entry.decision === "refused" ? "Refused" : "Allowed"),
        entry.reason ?? "", el("span", { class: cls, "data-seq": entry.seq }, result.text),
      ]);
    }
    document.getElementById("access").replaceChildren(
      table(["Time", "Organisation", "Who", "Purpose", "Action", "Decision", "Reason", "Proof"], rows, `Anchored on chain ${log.chain_id} at ${log.anchor_contract}`),
    );
    say("access-status", `${log.entries.length} entries; ${verified} proofs verified in this browser.`, "ok");
  } catch (error) {
    say("access-status", `Could not check: ${error.message}`, "bad");
  }
}

async function showLoyalty() {
  const data = await api("GET", "/v1/me/loyalty");
  const target = document.getElementById("loyalty");
  if (!data.available) {
    target.replaceChildren(el("p", { class: "muted" }, data.reason));
    return;
  }
  target.replaceChildren(
    el("p", {}, `Balance: ${data.balance.balance} points`),
    table(["Time", "Kind", "In/out", "Points", "Organisation", "Reason"], data.movements.map((m) => [m.time, m.kind, m.direction, String(m.amount), m.org_id ?? "", m.reason ?? ""])),
  );
}

const ERASURE_TEXT = {
  requested: "Requested: waiting for the organisation",
  in_progress: "In progress: the erasure is being recorded",
  done: "Done: your record is erased",
  refused: "Refused",
};

async function showErasure() {
  const requests = await api("GET", "/v1/me/erasure-requests");
  document.getElementById("erasure").replaceChildren(
    requests.length
      ? table(["Asked", "Status", "Reason"], requests.map((r) => [r.requested_at, el("strong", { "data-erasure": r.status }, ERASURE_TEXT[r.status] ?? r.status), r.reason ?? ""]), "Your erasure requests")
      : el("p", { class: "muted" }, "No erasure requests."),
  );
  // While the organisation's erasure is being recorded on the chain, look again shortly.
  if (requests.some((r) => r.status === "in_progress")) setTimeout(() => showErasure().catch(() => {}), 1000);
}

async function requestErasure() {
  say("erasure-status", "Sign the request in your wallet…");
  try {
    const typed = await api("GET", "/v1/me/erasure-requests/typed-data");
    const signature = await wallet().request({ method: "eth_signTypedData_v4", params: [session.wallet, JSON.stringify(typed)] });
    await api("POST", "/v1/me/erasure-requests", { requested_at: typed.message.requestedAt, signature });
    await showErasure();
    say("erasure-status", "Erasure requested.", "ok");
  } catch (error) {
    say("erasure-status", `Not requested: ${error.message}`, "bad");
  }
}

async function restore() {
  try {
    session = await api("GET", "/v1/me/session");
    await enter();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) say("signin-status", error.message, "bad");
  }
}

document.getElementById("signin-button").addEventListener("click", signIn);
document.getElementById("signout-button").addEventListener("click", signOut);
document.getElementById("access-refresh").addEventListener("click", showAccessLog);
document.getElementById("erasure-button").addEventListener("click", requestErasure);
document.getElementById("erasure-refresh").addEventListener("click", () => showErasure().catch((e) => say("erasure-status", e.message, "bad")));
restore();
