// The citizen's digital card: refreshed while online (a new signed statement of entitlement),
// kept on the phone so it still shows, with its "valid as of" time, when offline.
(() => {
  // ?de=CURP: the card of a minor this person answers for (checked by the server each time).
  const asked = new URLSearchParams(location.search).get("de");
  const WARD = asked && /^[A-Z0-9]{18}$/.test(asked) ? asked : null;
  const KEY = WARD ? `salud.credencial.${WARD}` : "salud.credencial";
  const DATA = WARD ? `/credencial/datos?de=${WARD}` : "/credencial/datos";
  const HERE = encodeURIComponent(WARD ? `/credencial/?de=${WARD}` : "/credencial/");
  const REFRESH_MS = 10 * 60 * 1000;
  const $ = (id) => document.getElementById(id);
  const FIELDS = { given_names: "nombre", surnames: "apellidos", birth_date: "fecha de nacimiento", sex: "sexo",
                   nationality: "nacionalidad", blood_type: "grupo sanguíneo", organ_donor: "donación de órganos" };
  const when = (iso) => new Date(iso).toLocaleString("es-MX", { dateStyle: "medium", timeStyle: "short" });

  function show(card, online) {
    $("qr").innerHTML = card.qr_svg;  // SVG made by our server (segno), no user input in it
    $("name").textContent = `${card.holder.given_names} ${card.holder.surnames}`;
    $("curp").textContent = card.holder.curp;
    $("birth").textContent = card.holder.birth_date.split("-").reverse().join("/");
    $("blood").textContent = card.holder.blood_type === "unknown" ? "—" : card.holder.blood_type;
    $("rights").textContent = card.entitlements.map((e) => e.institution).join(", ") || "—";
    const expired = new Date(card.expires_at) < new Date();
    // A statement that names no institution says the holder had no entitlement in force then:
    // the identity is still valid, the entitlement is not (docs/credential.md).
    const entitled = card.entitlements.length > 0;
    $("as-of").textContent = expired
      ? `La declaración de derechohabiencia venció (${when(card.expires_at)}): conéctese para renovarla.`
      : entitled
        ? `Derechohabiencia vigente al ${when(card.statement_as_of)} · válida hasta ${when(card.expires_at)}`
        : `Sin derechohabiencia vigente al ${when(card.statement_as_of)} (la identidad sí es válida) · hasta ${when(card.expires_at)}`;
    // This card is signed anew with the registry's data; the printed one keeps its issuance's.
    const outdated = card.plastic_outdated || [];
    $("outdated").hidden = outdated.length === 0;
    $("outdated").textContent = outdated.length
      ? `Su tarjeta impresa muestra datos anteriores (${outdated.map((f) => FIELDS[f] || f).join(", ")}): pida en un módulo su reposición por actualización de datos.`
      : "";
    $("card").hidden = false;
    $("card").dataset.state = online ? "online" : "offline";
    $("units").href = `/U/${card.link.split("/U/")[1]}`;
    $("units").hidden = false;
    const status = $("status");
    status.textContent = online ? "En línea: credencial actualizada." : "Sin conexión: se muestra la última credencial guardada.";
    status.className = online ? "status" : "status offline";
  }

  async function refresh() {
    try {
      const answer = await fetch(DATA, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        // The session ended (it lasts minutes): keep showing the saved card, as offline, with
        // a way to sign in again; without a saved card, go to the sign-in page.
        const saved = localStorage.getItem(KEY);
        if (!saved) { location.href = `/entrar?next=${HERE}`; return; }
        show(JSON.parse(saved), false);
        $("status").textContent = "Su sesión terminó: se muestra la última credencial guardada. ";
        const again = document.createElement("a");
        again.href = `/entrar?next=${HERE}`;
        again.textContent = "Entrar para actualizarla";
        $("status").append(again);
        return;
      }
      if (answer.status === 403 || answer.status === 404) {
        // The server's answer, not a lost connection: the card was suspended or revoked, or
        // it expired and must be renewed (404), or the link to the minor ended or they came
        // of age (403). The copy on this phone goes too, and the server's reason is shown.
        localStorage.removeItem(KEY);
        $("card").hidden = true;
        $("units").hidden = true;
        let detail = "Esta credencial ya no está disponible en este teléfono.";
        try { detail = (await answer.json()).detail || detail; } catch (ignored) { /* not JSON */ }
        $("status").textContent = detail;
        $("status").className = "status offline";
        return;
      }
      // A server fault (5xx) is handled as no network: the saved card keeps showing.
      if (!answer.ok) throw new Error(String(answer.status));
      const card = await answer.json();
      localStorage.setItem(KEY, JSON.stringify(card));
      show(card, true);
    } catch (error) {
      const saved = localStorage.getItem(KEY);
      if (saved) show(JSON.parse(saved), false);
      else $("status").textContent = "Sin conexión y sin una credencial guardada en este teléfono.";
    }
  }

  if (WARD) {
    $("card-kind").textContent = "Credencial de salud · Digital · Menor a su cargo";
    $("back").hidden = false;
  }
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/credencial/sw.js", { scope: "/credencial/" });
  window.addEventListener("online", refresh);
  setInterval(refresh, REFRESH_MS);
  refresh();
})();
