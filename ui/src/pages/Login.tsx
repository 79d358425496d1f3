import { useEffect, useState, type FormEvent } from 'react'
import { getConfig, login } from '../api'
import { navigate } from '../router'
import { ErrorBox } from '../util'

// next is where to go after logging in: a path on this site only.
function nextPath(): string {
  const next = new URLSearchParams(location.search).get('next') || '/jobs'
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/jobs'
}

export function LoginPage({ onLogin }: { onLogin: () => Promise<void> }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  const [oidc, setOidc] = useState(false)
  useEffect(() => {
    getConfig().then((c) => setOidc(c.oidc), () => {})
  }, [])

  const submit = async (e: FormEvent) => {
    e.preventDefault()
    setBusy(true)
    setError('')
    try {
      await login(token.trim())
      await onLogin()
      navigate(nextPath(), true)
    } catch (err: any) {
      setError(err?.message || String(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <div className="login">
      <h1>haul</h1>
      <form onSubmit={submit}>
        <label>
          API token
          <input
            data-testid="login-token"
            type="password"
            autoComplete="off"
            placeholder="haul_…"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            autoFocus
          />
        </label>
        <button data-testid="login-submit" type="submit" disabled={busy || !token.trim()}>
          Log in
        </button>
        {error ? (
          <div className="error" data-testid="login-error" role="alert">
            {error}
          </div>
        ) : null}
      </form>
      {oidc ? (
        <>
          <div className="muted or">or</div>
          <button
            data-testid="login-sso"
            onClick={() => (location.href = '/ui/oidc/login?next=' + encodeURIComponent(nextPath()))}
          >
            Log in with SSO
          </button>
        </>
      ) : null}
      <ErrorBox error={null} />
    </div>
  )
}
