// The operators' console: signed in with an API key that stays in the server-side session.
// Every action calls the API's own endpoint; a button is shown only where the key's account holds
// the role, and the API checks the role again whatever the page shows.
import { api, el, say, setCsrf, short, table } from "../shared/api.js";

let session = null;

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("api-key");
  try {
    session = await api("POST", "/v1/console/session", { api_key: input.value });
    input.value = "";
    await enter();
  } catch (error) {
    say("signin-status", `Sign-in refused: ${error.message}`, "bad");
  }
}

async function signOut() {
  await api("DELETE", "/v1/console/session");
  location.reload();
}

const isAdmin = () => session.roles.includes("ORG_ADMIN");

async function enter() {
  setCsrf(session.csrf_token);
  say("signin-status", `Signed in: organisation ${session.org_id}, account ${session.account}, roles ${session.roles.join(", ") || "none"}.`, "ok");
  document.getElementById("signin-form").classList.add("hidden");
  document.getElementById("signout-button").classList.remove("hidden");
  document.getElementById("signed-in").classList.remove("hidden");
  await Promise.all([showChain(), showOrgs(), showPipeline(), showAudit()]);
}

async function showChain() {
  const data = await api("GET", "/v1/console/chain?blocks=10");
  const rows = data.blocks.map((b) => [
    String(b.number), el("code", {}, short(b.hash, 12)), new Date(b.timestamp * 1000).toISOString(), String(b.gas_used),
    el("ul", {}, b.transactions.map((t) => el("li", {}, el("code", {}, short(t.hash, 12)), ` ${t.contract ? `${t.contract}.${t.function ?? "(unknown call)"}` : t.to ? `to ${short(t.to)}` : "contract creation"} from ${short(t.from)}`))),
  ]);
  document.getElementById("chain").replaceChildren(
    el("p", {}, `Chain ${data.chain_id}, head block ${data.head}.`),
    table(["Block", "Hash", "Time", "Gas", "Transactions"], rows),
  );
}

async function act(path, what) {
  say("proposals-status", `${what}…`);
  try {
    const operation = await api("POST", `${path}?wait=true`);
    say("proposals-status", `${what}: ${operation.status} in block ${operation.block_number}.`, "ok");
  } catch (error) {
    say("proposals-status", `${what} refused: ${error.message}`, "bad");
  }
  await showOrgs();
}

async function showOrgs() {
  const [orgs, proposals] = await Promise.all([api("GET", "/v1/orgs"), api("GET", "/v1/console/proposals")]);
  document.getElementById("orgs").replaceChildren(
    table(["Id", "Name", "Admin", "Active", "Members"], orgs.map((o) => [String(o.id), o.name, el("code", {}, o.admin), o.active ? "yes" : "no (suspended)", String(o.members.length)]), "Organisations"),
  );
  const rows = proposals.proposals.map((p) => {
    const actions = [];
    if (isAdmin() && p.status === "pending" && !p.approved_by_you) {
      actions.push(el("button", { type: "button", "data-approve": p.id, onclick: () => act(`/v1/orgs/proposals/${p.id}/approvals`, `Approving proposal ${p.id}`) }, `Approve ${p.id}`));
    }
    if (isAdmin() && p.status === "ready") {
      actions.push(el("button", { type: "button", "data-execute": p.id, onclick: () => act(`/v1/orgs/proposals/${p.id}/execution`, `Executing proposal ${p.id}`) }, `Execute ${p.id}`));
    }
    return [String(p.id), p.kind, `organisation ${p.proposer_org}`, `${p.approvals} of ${p.required_approvals}`, p.approved_by_you ? "yes" : "no", el("strong", { "data-status": p.id }, p.status), actions.length ? actions : el("span", { class: "muted" }, isAdmin() ? "" : "needs ORG_ADMIN")];
  });
  document.getElementById("proposals").replaceChildren(
    table(["Id", "Kind", "Proposed by", "Approvals", "Your organisation approved", "Status", "Action"], rows, "Proposals"),
  );
}

async function showPipeline() {
  const data = await api("GET", "/v1/console/pipeline");
  const counts = Object.entries(data.counts).map(([k, v]) => `${k}: ${v}`).join(", ");
  document.getElementById("pipeline").replaceChildren(
    el("p", {}, `Latest writes of your organisation: ${counts}.`),
    table(["Kind", "Status", "Sender", "Transaction", "Error", "Updated"], data.operations.slice(0, 25).map((o) => [
      o.kind, el("strong", {}, o.status), el("code", {}, short(o.sender)), el("code", {}, short(o.tx_hash ?? "", 12)),
      o.error ? `${o.error.name} ${JSON.stringify(o.error.args)}` : "", o.updated_at,
    ])),
  );
}

async function showAudit() {
  const target = document.getElementById("audit");
  try {
    const data = await api("GET", "/v1/audit/anchors");
    target.replaceChildren(table(["Batch", "Entries", "Root", "Status", "Transaction"], data.batches.map((b) => [
      String(b.chain_batch_id ?? ""), `${b.first_seq} to ${b.last_seq}`, el("code", {}, short(b.root, 12)), b.status, el("code", {}, short(b.tx_hash ?? "", 12)),
    ])));
  } catch (error) {
    target.replaceChildren(el("p", { class: "muted" }, `Not shown to this key: ${error.message}`));
  }
}

async function runVerify() {
  say("verify-status", "Walking the access log, its anchors and the chain's blocks…");
  try {
    const report = await api("GET", "/v1/console/verify");
    const line = (name, part) => el("li", { "data-verify": name }, el("strong", { class: part.intact ? "ok" : "bad" }, part.intact ? "Intact" : "BROKEN"), ` ${name}: ${part.summary}`);
    document.getElementById("verify").replaceChildren(el("ul", {}, line("audit verify", report.audit), line("chain verify", report.chain)));
    say("verify-status", report.audit.intact && report.chain.intact ? "Both intact." : "A problem was found.", report.audit.intact && report.chain.intact ? "ok" : "bad");
  } catch (error) {
    say("verify-status", `Not run: ${error.message}`, "bad");
  }
}

async function restore() {
  try {
    session = await api("GET", "/v1/console/session");
    await enter();
  } catch {
    /* not signed in */
  }
}

document.getElementById("signin-form").addEventListener("submit", signIn);
document.getElementById("signout-button").addEventListener("click", signOut);
document.getElementById("chain-refresh").addEventListener("click", showChain);
document.getElementById("verify-button").addEventListener("click", runVerify);
restore();
