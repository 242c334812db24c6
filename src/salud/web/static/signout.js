// Signing out forgets the cards saved on this phone (the holder's and those of the minors
// they answer for) before the request leaves: a shared phone keeps nothing. The server's
// Clear-Site-Data header does the same, but not every browser honours it on a redirect.
document.querySelectorAll('form[action="/salir"]').forEach((form) => {
  form.addEventListener("submit", () => {
    Object.keys(localStorage)
      .filter((key) => key === "salud.credencial" || key.startsWith("salud.credencial."))
      .forEach((key) => localStorage.removeItem(key));
  });
});
