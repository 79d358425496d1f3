// The app shell: the session, the top bar and the routes.
import { Component, createContext, useContext, useEffect, useState, type ReactNode } from 'react'
import { getSession, logout, type Session } from './api'
import { Link, navigate, useLocation } from './router'
import { ErrorBox } from './util'
import { LoginPage } from './pages/Login'
import { JobsPage } from './pages/Jobs'
import { JobPage } from './pages/Job'
import { TasksPage } from './pages/Tasks'
import { TaskPage } from './pages/Task'
import { TeamsPage } from './pages/Teams'
import { ClustersPage } from './pages/Clusters'

const SessionContext = createContext<Session | null>(null)
export const useSession = () => useContext(SessionContext)

export function App() {
  const loc = useLocation()
  const [session, setSession] = useState<Session | null | undefined>(undefined)
  const [error, setError] = useState<unknown>(null)
  const loadSession = () =>
    getSession().then(
      (s) => {
        setSession(s)
        setError(null)
      },
      (e) => setError(e),
    )
  useEffect(() => {
    loadSession()
  }, [])

  const onLogin = loc.path === '/login'
  useEffect(() => {
    if (session === null && !onLogin) navigate('/login?next=' + encodeURIComponent(loc.path + loc.search), true)
    if (loc.path === '/') navigate('/jobs', true)
  }, [session, onLogin, loc.path, loc.search])

  if (onLogin) return <LoginPage onLogin={loadSession} />
  if (error) return <div className="page"><ErrorBox error={error} /></div>
  if (!session) return <div className="page muted">Loading…</div>

  return (
    <SessionContext.Provider value={session}>
      <TopBar session={session} path={loc.path} onLogout={() => setSession(null)} />
      <main className="page">
        <ErrorBoundary key={loc.path}>
          <Route path={loc.path} query={loc.query} />
        </ErrorBoundary>
      </main>
    </SessionContext.Provider>
  )
}

function Route({ path, query }: { path: string; query: URLSearchParams }): ReactNode {
  let m: RegExpMatchArray | null
  if (path === '/jobs' || path === '/jobs/') return <JobsPage query={query} />
  if ((m = path.match(/^\/jobs\/([^/]+)\/tasks\/(.+)$/))) {
    return <TaskPage jobId={decodeURIComponent(m[1])} taskKey={decodeURIComponent(m[2])} query={query} />
  }
  if ((m = path.match(/^\/jobs\/([^/]+)\/tasks\/?$/))) return <TasksPage jobId={decodeURIComponent(m[1])} query={query} />
  if ((m = path.match(/^\/jobs\/([^/]+)\/?$/))) return <JobPage key={m[1]} jobId={decodeURIComponent(m[1])} />
  if (path === '/teams') return <TeamsPage />
  if (path === '/clusters') return <ClustersPage />
  if (path === '/') return null
  return (
    <div>
      <h1>Not found</h1>
      <p>
        No page at {path}. <Link to="/jobs">Jobs</Link>
      </p>
    </div>
  )
}

function TopBar({ session, path, onLogout }: { session: Session; path: string; onLogout: () => void }) {
  const [error, setError] = useState<unknown>(null)
  const doLogout = async () => {
    try {
      await logout()
      onLogout()
      navigate('/login', true)
    } catch (e) {
      setError(e)
    }
  }
  const tab = (to: string, label: string) => (
    <Link to={to} className={path.startsWith(to) ? 'active' : ''}>
      {label}
    </Link>
  )
  return (
    <header className="topbar">
      <Link to="/jobs" className="brand">
        haul
      </Link>
      <nav>
        {tab('/jobs', 'Jobs')}
        {tab('/teams', 'Teams')}
        {tab('/clusters', 'Clusters')}
      </nav>
      <span className="spacer" />
      {error ? <ErrorBox error={error} /> : null}
      <span className="muted" title={`logged in via ${session.via}`}>
        <span data-testid="whoami">{session.subject}</span>
        {session.platformAdmin ? ' (platform admin)' : ''}
      </span>
      <button data-testid="logout" onClick={doLogout}>
        Log out
      </button>
    </header>
  )
}

// ErrorBoundary shows a render error on the page instead of a blank one.
class ErrorBoundary extends Component<{ children: ReactNode }, { error: unknown }> {
  state = { error: null as unknown }
  static getDerivedStateFromError(error: unknown) {
    return { error }
  }
  render() {
    if (this.state.error) {
      return (
        <div>
          <ErrorBox error={this.state.error} />
          <button onClick={() => this.setState({ error: null })}>Try again</button>
        </div>
      )
    }
    return this.props.children
  }
}
