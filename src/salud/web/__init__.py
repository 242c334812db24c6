"""Server-rendered pages in Spanish, mobile-first: sign-in, the citizen's digital card
(installable, works offline once loaded), the reception desk's verifier (phone camera or
barcode scanner), and the nearest-units page the card's second QR opens."""
