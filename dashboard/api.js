// The dashboard's HTTP calls. Each returns parsed JSON or throws an ApiError.

/** An HTTP answer that was not a success; `status` and the server's error `code`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

async function failure(response) {
  let code = "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message);
}

/** GET /api/me: the signed-in user, their classes, CSRF token, demo flag and notices. */
export async function getMe() {
  const response = await fetch("/api/me", { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** POST /auth/signout with the session's CSRF token. */
export async function signOut(csrfToken) {
  const response = await fetch("/auth/signout", {
    method: "POST",
    headers: { "X-CSRF-Token": csrfToken },
    credentials: "same-origin",
    redirect: "manual",
    referrerPolicy: "same-origin", // so the Origin header is sent (see index.html)
  });
  // A redirect (opaque) or any 2xx means the session is gone.
  if (response.type === "opaqueredirect" || response.ok) return;
  throw await failure(response);
}

/** The URL of a student's last stored thumbnail. */
export function thumbnailUrl(studentId) {
  return `/api/students/${encodeURIComponent(studentId)}/thumbnail`;
}
