// Nearest units: with the phone's location when the person allows it.
(() => {
  const link = document.getElementById("here");
  link.addEventListener("click", (event) => {
    if (!navigator.geolocation) return;
    event.preventDefault();
    navigator.geolocation.getCurrentPosition((p) => {
      const url = new URL(location.href);
      url.searchParams.set("lat", p.coords.latitude.toFixed(5));
      url.searchParams.set("lng", p.coords.longitude.toFixed(5));
      location.href = url.toString();
    }, () => {
      // Refused or not found: say so, rather than a click that does nothing.
      link.insertAdjacentText("afterend",
        " · No se pudo obtener su ubicación: permita el acceso a la ubicación e intente de nuevo.");
    }, { timeout: 15000 });
  });
})();
