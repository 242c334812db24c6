// Service worker of the digital card: keeps the page shell so the card opens offline.
// The card itself (personal data, signed QR) is kept by the page in localStorage, not here.
const SHELL = "salud-credencial-v4";
const FILES = ["/credencial/", "/static/salud.css", "/static/card.js", "/static/signout.js", "/static/icon.svg",
               "/credencial/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(
    names.filter((n) => n !== SHELL).map((n) => caches.delete(n)))).then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.pathname === "/credencial/datos") return;
  if (!FILES.includes(url.pathname)) return;
  // Network first (fresh shell when online), the cached shell when offline.
  event.respondWith(fetch(event.request).then((answer) => {
    const copy = answer.clone();
    // Kept under the path alone: a minor's CURP (?de=) stays out of the cache's keys.
    caches.open(SHELL).then((cache) => cache.put(url.pathname, copy));
    return answer;
  }).catch(() => caches.match(event.request, { ignoreSearch: true })));  // ?de=CURP: same shell
});
