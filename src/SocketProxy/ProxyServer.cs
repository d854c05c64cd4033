using IoMux.Interop;
using IoMux.Loop;
using Microsoft.Extensions.Logging;

namespace IoMux.SocketProxy;

/// <summary>Counts a run of the proxy (read on the loop thread, or after it stopped).</summary>
public sealed class ProxyCounters
{
    /// <summary>Connections accepted.</summary>
    public long Accepted { get; internal set; }
    /// <summary>Connections whose backend connect failed (refused, unreachable, timed out, unresolvable).</summary>
    public long BackendFailures { get; internal set; }
    /// <summary>Clients accepted and closed at once at the connection limit (not counted in Accepted).</summary>
    public long Refused { get; internal set; }
    /// <summary>Connections closed, for any reason.</summary>
    public long Closed { get; internal set; }
    /// <summary>Bytes delivered from clients to the backend (counted as they are written).</summary>
    public long BytesToBackend => ToBackend.Bytes;
    /// <summary>Bytes delivered from the backend to clients (counted as they are written).</summary>
    public long BytesToClients => ToClients.Bytes;

    /// <summary>Splice pipes opened (one per direction that carried a bulk stream; two descriptors each).</summary>
    internal long PipesOpened { get; set; }

    internal ByteTally ToBackend { get; } = new();
    internal ByteTally ToClients { get; } = new();
}

/// <summary>The proxy on an <see cref="EventLoop"/>: accepts on the listening sockets it was given, relays each
/// connection to the backend, applies <c>--connections-max</c> (refusing past it as systemd does, or with
/// --at-limit=queue by not polling the listeners), exits when idle,
/// and drains on <see cref="Stop"/>. Every member runs on the loop thread.</summary>
public sealed class ProxyServer
{
    // Accepts per listener wakeup: enough to empty a burst, few enough to let established connections run.
    private const int AcceptBatch = 32;

    private readonly List<IoSource> _listeners = [];
    private readonly HashSet<Connection> _connections = [];
    private TimerSource? _idleTimer, _acceptRetry, _drainTimer;
    private readonly SpareDescriptors _spares = new(8);
    private readonly DescriptorBudget _budget;
    private readonly int _perConnection;
    private TimerSource? _budgetCheck;
    private bool _acceptPaused, _stopping, _backendFailing, _shortageLogged;
    private long _failuresWhileDown, _nextId, _acceptedAtLastCheck;

    /// <summary>At most this many failed-connect lines a second; the rest are counted in one line at the second's end.</summary>
    internal const int FailureLinesPerSecond = 10;
    private long _failureWindowStart = long.MinValue / 2; // Environment.TickCount64 ms
    private int _failureLines;
    private long _failuresSuppressed;
    private TimerSource? _suppressedTimer;

    /// <summary>Serves <paramref name="listeners"/> (non-blocking listening stream sockets, owned by the server from
    /// now on) on <paramref name="loop"/>.</summary>
    public ProxyServer(EventLoop loop, IReadOnlyList<int> listeners, ProxyOptions options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(listeners);
        if (listeners.Count == 0)
            throw new ArgumentException("At least one listening socket is needed.", nameof(listeners));
        Loop = loop;
        Options = options;
        Log = new ProxyLog(logger);
        foreach (int fd in listeners)
        {
            // TCP_NODELAY goes on every relayed TCP socket: a proxy must not add Nagle's wait for an ACK when a
            // response arrives in two pieces (nginx's headers, then its sendfile body) and the client delays its ACK.
            bool tcp = Sockets.GetIntOption(fd, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY) >= 0;
            _listeners.Add(loop.AddIo(fd, Interest.Readable, (source, _) => AcceptFrom(source, tcp), description: $"listener fd {fd}"));
        }
        Log.Listening(listeners.Count, options.Target.Text, loop.Poller.Capabilities.Name);
        _spares.Take();
        _budget = new DescriptorBudget();
        // A relayed connection holds its client and backend sockets, and with splice up to one pipe per direction
        // (opened when a direction carries a bulk stream; counted from the accept, so that one never has to wait).
        _perConnection = options.CopyMode == CopyMode.Splice ? 6 : 2;
        // epoll reports a failed non-blocking connect with EPOLLERR (and EPOLLHUP): a report of writable alone is a
        // connect that succeeded, and SO_ERROR need not be asked. Other backends (select has no error set) ask.
        FixedAddress = options.Target.FixedEndpoint?.Serialize();
        ConnectFailureFlagged = loop.Poller.Capabilities.Kind == BackendKind.Epoll;
        BulkBuffer = options.CopyMode == CopyMode.Splice ? OpenSplicePipe : null;
        // 16 free blocks: a few hundred KiB at most kept for the next connections (1 MiB in buffer mode).
        Buffers = new NativeBlockPool(RelayBuffer.MemoryBufferSize(options.CopyMode), keep: 16);
        // Another process may lower the limit under a running proxy (prlimit): look every quarter second, and give
        // the spares back at once when what the proxy holds no longer leaves the runtime its reserve.
        _budgetCheck = loop.AddTimer(TimeSpan.FromMilliseconds(250), _ => CheckBudget(), accuracy: TimeSpan.FromMilliseconds(50),
            period: TimeSpan.FromMilliseconds(250), description: "descriptor budget");
        UpdateIdleTimer();
        ProxyMetrics.Proxies.Add(this);
        loop.AddExit(_ =>
        {
            ProxyMetrics.Proxies.Retire(this);
            Buffers.Dispose();
        }, description: "proxy metrics and buffers");
    }

    /// <summary>The loop the server runs on.</summary>
    public EventLoop Loop { get; }

    /// <summary>The options it was started with.</summary>
    public ProxyOptions Options { get; }

    /// <summary>Totals so far.</summary>
    public ProxyCounters Counters { get; } = new();

    /// <summary>Connections open now.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>Times accepting was paused for want of descriptors.</summary>
    public long AcceptPauses { get; private set; }

    internal ProxyLog Log { get; }

    /// <summary>Where READY/STATUS/STOPPING go (systemd's notify socket), if anywhere.</summary>
    internal ServiceManager? Service { get; init; }

    /// <summary>The status line while serving normally.</summary>
    internal string RelayingStatus => $"Relaying {_listeners.Count} listening socket(s) to {Options.Target.Text}";

    private void AcceptFrom(IoSource listener, bool tcp)
    {
        // One getrlimit per wakeup, not one per accept (two per connection at one client: the accept and the one
        // that says EAGAIN). A limit lowered by another process is seen at the next wakeup, as before at the next accept.
        long limit = DescriptorBudget.SoftLimit();
        for (int i = 0; i < AcceptBatch && IsAccepting; i++)
        {
            if (!_budget.Allows((long)_connections.Count * _perConnection, _perConnection, limit))
            {
                PauseAccepting(Errno.EMFILE); // the clients wait in the backlog; the runtime keeps its reserve
                break;
            }
            int fd = LibC.Accept(listener.Descriptor);
            if (fd >= 0)
            {
                if (!Options.QueueAtLimit && _connections.Count > Options.ConnectionsMax)
                {
                    // systemd-socket-proxyd's add_connection_socket: `>`, then close and log at warning.
                    Counters.Refused++;
                    Log.ConnectionLimit();
                    LibC.CloseQuietly(fd);
                    continue;
                }
                if (tcp)
                    Sockets.SetIntOption(fd, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY, 1);
                StartConnection(fd);
                continue;
            }
            int errno = -fd;
            if (errno == Errno.EAGAIN)
                break;
            if (errno == Errno.EINTR || errno == Errno.ECONNABORTED)
                continue;
            if (errno == Errno.EMFILE || errno == Errno.ENFILE || errno == Errno.ENOBUFS || errno == Errno.ENOMEM)
            {
                PauseAccepting(errno);
                break;
            }
            // EPROTO, EPERM (a firewall said no) and the like concern one pending connection only.
            Log.AcceptFailed(errno);
        }
        UpdateListeners();
    }

    private void StartConnection(int fd)
    {
        Counters.Accepted++;
        var connection = new Connection(this, fd, ++_nextId);
        _connections.Add(connection);
        UpdateIdleTimer();
        connection.Begin(Options.Target);
    }

    private bool IsAccepting => !_stopping && !_acceptPaused && (!Options.QueueAtLimit || _connections.Count < Options.ConnectionsMax);

    /// <summary>Listeners are polled exactly while accepting: paused, stopping, or (--at-limit=queue) at the limit,
    /// clients wait in the listen backlog (and connect() there still succeeds).</summary>
    private void UpdateListeners()
    {
        var wanted = IsAccepting ? SourceState.On : SourceState.Off;
        foreach (var listener in _listeners)
            if (!listener.IsDisposed && listener.State != wanted)
                listener.State = wanted;
    }

    /// <summary>Out of descriptors: accepting again at once would spin (the pending connection keeps the listener
    /// readable), so stop polling the listeners for a while. The kernel keeps the clients in the backlog.</summary>
    private void PauseAccepting(int errno)
    {
        if (!_shortageLogged)
            Log.AcceptPaused(errno, Options.AcceptRetryDelay);
        _shortageLogged = true;
        if (!_acceptPaused)
        {
            AcceptPauses++;
            Service?.Status($"Out of descriptors ({Errno.Name(errno)}): not accepting; {_connections.Count} connection(s) active");
        }
        _acceptPaused = true;
        _spares.Give(); // headroom for the runtime while the process is at its limit
        ScheduleAcceptRetry();
    }

    private void ScheduleAcceptRetry()
    {
        _acceptRetry?.Dispose();
        _acceptRetry = Loop.AddTimer(Options.AcceptRetryDelay, _ =>
        {
            // The spares count as the proxy's own: taking them back must not eat into the runtime's reserve either.
            if (!_budget.Allows((long)_connections.Count * _perConnection, _perConnection + _spares.Missing) || !_spares.Take())
            {
                ScheduleAcceptRetry(); // still at the limit
                return;
            }
            _acceptPaused = false;
            Service?.Status(RelayingStatus);
            UpdateListeners();
        }, accuracy: TimeSpan.FromMilliseconds(10), description: "accept retry");
    }

    private void CheckBudget()
    {
        // Remeasured only after a whole period without an accept: with a connection per request the count is
        // often zero at the tick, and listing /proc/self/fd (a stat and an lstat per descriptor) there cost more
        // system calls than the connections themselves at one client.
        bool quiet = Counters.Accepted == _acceptedAtLastCheck;
        _acceptedAtLastCheck = Counters.Accepted;
        if (_connections.Count == 0 && !_acceptPaused && quiet)
            _budget.Remeasure();
        if (_stopping || _budget.Allows((long)_connections.Count * _perConnection, 0))
            return;
        PauseAccepting(Errno.EMFILE);
        UpdateListeners();
    }

    /// <summary>True when the proxy may open <paramref name="count"/> more descriptors for a connection it already
    /// accepted (its backend socket, its pipes) and still leave the runtime its reserve. Another process may have
    /// lowered the limit since the accept; every descriptor the proxy opens is checked, not only accepts.</summary>
    internal bool MayOpen(int count) => _budget.Allows((long)_connections.Count * _perConnection, count);

    /// <summary>The fixed target's address as connect(2) takes it (null when the target is a name).</summary>
    internal System.Net.SocketAddress? FixedAddress { get; }

    /// <summary>The poller flags a failed connect as an error (epoll), so writable alone means connected.</summary>
    internal bool ConnectFailureFlagged { get; }

    /// <summary>The memory the connections' buffers come from (and go back to).</summary>
    internal NativeBlockPool Buffers { get; }

    /// <summary>What a direction that fills its first buffer goes on with: a splice pipe, or null (copy on) when the
    /// descriptors are not there to spare. Null in buffer mode.</summary>
    internal Func<RelayBuffer?>? BulkBuffer { get; }

    private RelayBuffer? OpenSplicePipe()
    {
        if (!MayOpen(2))
            return null; // the runtime's reserve first (DescriptorBudget)
        try
        {
            var pipe = new SplicePipe();
            Counters.PipesOpened++;
            return pipe;
        }
        catch (PosixException)
        {
            return null; // EMFILE, ENFILE, or fs.pipe-user-pages-hard reached: copying works as well
        }
    }

    /// <summary>A connection ran out of descriptors after its accept: accepting more would only make it worse.</summary>
    internal void OnOutOfDescriptors(int errno)
    {
        PauseAccepting(errno);
        UpdateListeners();
    }

    /// <summary>Failed backend connects by error.type (<see cref="ProxyMetrics.ConnectErrorTypes"/>; loop thread, read by the meter).</summary>
    internal readonly long[] ConnectFailures = new long[ProxyMetrics.ConnectErrorTypes.Length];

    internal void OnConnectionClosed(Connection connection)
    {
        if (!_connections.Remove(connection))
            return;
        Counters.Closed++;
        if (_stopping && _connections.Count == 0)
        {
            Loop.Exit(0);
            return;
        }
        UpdateListeners();
        UpdateIdleTimer();
    }

    /// <summary>A client is given up because its backend connect failed. systemd-socket-proxyd 252 logs every such
    /// failure at error priority (connect_cb and connection_start in src/socket-proxy/socket-proxyd.c:
    /// <c>log_error_errno(error, "Failed to connect to remote host: %m")</c>; resolve_handler's
    /// <c>log_error("Failed to resolve host: ...")</c>), so that <c>journalctl -p err</c> shows them (issue 21, item 6).
    /// So does this, up to <see cref="FailureLinesPerSecond"/> lines a second: a client loop against a dead
    /// backend must not flood the journal; the failures past that are counted in one line when the second ends.</summary>
    internal void OnBackendUnreachable(int errno, string? detail, bool resolving)
    {
        Counters.BackendFailures++;
        ConnectFailures[ProxyMetrics.ConnectErrorKind(errno, resolving)]++;
        _failuresWhileDown++;
        _backendFailing = true;
        long now = Environment.TickCount64;
        if (now - _failureWindowStart >= 1000)
        {
            _failureWindowStart = now;
            _failureLines = 0;
        }
        if (_failureLines < FailureLinesPerSecond)
        {
            _failureLines++;
            Log.BackendUnreachable(Options.Target.Text, errno, detail);
            return;
        }
        if (_failuresSuppressed++ == 0)
            _suppressedTimer = Loop.AddTimer(TimeSpan.FromMilliseconds(Math.Max(1, _failureWindowStart + 1000 - now)), _ => LogSuppressedFailures(),
                accuracy: TimeSpan.FromMilliseconds(50), description: "failed-connect log limit");
    }

    private void LogSuppressedFailures()
    {
        _suppressedTimer?.Dispose();
        _suppressedTimer = null;
        if (_failuresSuppressed == 0)
            return;
        Log.BackendFailuresSuppressed(Options.Target.Text, _failuresSuppressed, FailureLinesPerSecond);
        _failuresSuppressed = 0;
    }

    /// <summary>A connection is relaying: the backend answers and descriptors were found.</summary>
    internal void OnRelayStarted()
    {
        _shortageLogged = false;
        if (!_backendFailing)
            return;
        _backendFailing = false;
        Log.BackendReachable(Options.Target.Text, _failuresWhileDown);
        _failuresWhileDown = 0;
    }

    /// <summary>The idle timer runs while no connection is open, from the end of the first one: as in
    /// systemd-socket-proxyd 252, whose idle timer is created only in connection_release (socket-proxyd.c), so that a
    /// proxy started with no client waiting (a unit started by hand, or the socket unit's first client gone before
    /// the proxy took it) never exits by --exit-idle-time (issue 21, item 7).</summary>
    private void UpdateIdleTimer()
    {
        if (Options.ExitIdleTime is not { } idle || _stopping || Counters.Accepted == 0)
            return;
        if (_connections.Count > 0)
        {
            _idleTimer?.Dispose();
            _idleTimer = null;
        }
        else if (_idleTimer is null)
        {
            _idleTimer = Loop.AddTimer(idle, _ =>
            {
                Log.IdleExit(idle);
                Service?.Stopping($"No connection for {idle.TotalSeconds} s; exiting");
                Loop.Exit(0);
            }, accuracy: TimeSpan.FromMilliseconds(50), description: "exit-idle-time");
        }
    }

    /// <summary>Stops accepting (closing the listening sockets) and exits the loop with 0: at once, closing the
    /// active connections, when <see cref="ProxyOptions.DrainTime"/> is zero (the default, as systemd-socket-proxyd,
    /// which installs no SIGTERM handler and dies by the signal: issue 21, item 5); otherwise once they have ended,
    /// or after the drain time by closing them. A second call closes them at once.</summary>
    public void Stop()
    {
        if (_stopping)
        {
            CloseAll();
            return;
        }
        _stopping = true;
        bool drain = Options.DrainTime > TimeSpan.Zero && _connections.Count > 0;
        Service?.Stopping(!drain ? "Stopping" : $"Draining {_connections.Count} connection(s) for up to {Options.DrainTime.TotalSeconds} s");
        LogSuppressedFailures();
        _idleTimer?.Dispose();
        _acceptRetry?.Dispose();
        _budgetCheck?.Dispose();
        _spares.Dispose();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
            LibC.CloseQuietly(listener.Descriptor);
        }
        if (!drain)
        {
            CloseAll();
            return;
        }
        Log.Draining(_connections.Count, Options.DrainTime);
        _drainTimer = Loop.AddTimer(Options.DrainTime, _ =>
        {
            Log.DrainTimedOut(_connections.Count);
            CloseAll();
        }, accuracy: TimeSpan.FromMilliseconds(50), description: "drain time");
    }

    private void CloseAll()
    {
        _drainTimer?.Dispose();
        foreach (var connection in _connections.ToArray())
            connection.Close(abortive: false);
        Loop.Exit(0);
    }
}
