// Times shown in UTC or in the browser's time zone: the choice is remembered in localStorage.

const ZONE = "gramlogs.zone";

export function zone() {
  return localStorage.getItem(ZONE) === "local" ? "local" : "utc";
}

export function setZone(value) {
  localStorage.setItem(ZONE, value);
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// "2026-12-02 14:03:05.123" in the chosen zone.
export function formatTime(value, which = zone()) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  if (which === "utc") return d.toISOString().slice(0, 23).replace("T", " ");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

// A short form for axis labels: the time of day, with the date when the span covers days.
export function formatTick(d, withDate, which = zone()) {
  const full = formatTime(d, which);
  return withDate ? full.slice(5, 16) : full.slice(11, 19);
}

const PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

// A Date from what a person types: "2026-12-02", "2026-12-02 14:03", "...:05.123", with an
// optional "Z" or "+01:00"; without one, the time is in the chosen zone. null when it is not one.
export function parseTime(text, which = zone()) {
  const m = PATTERN.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "0", offset] = m;
  const ms = Number(frac.padEnd(3, "0").slice(0, 3));
  const parts = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms];
  let date;
  if (offset || which === "utc") {
    date = new Date(Date.UTC(...parts));
    if (offset && offset.toUpperCase() !== "Z") {
      const sign = offset[0] === "-" ? -1 : 1;
      const digits = offset.slice(1).replace(":", "");
      date = new Date(
        date.getTime() - sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60e3,
      );
    }
  } else {
    date = new Date(...parts);
  }
  // Date rolls 2026-02-31 over into March: refuse what is not a real time instead.
  const real =
    Number(mo) <= 12 && Number(d) <= 31 && Number(h) <= 23 && Number(mi) <= 59 && Number(s) <= 59;
  return real && !Number.isNaN(date.getTime()) ? date : null;
}
