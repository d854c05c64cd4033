using System.Net;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.SocketProxy;

/// <summary>One accepted client and its backend connection: connect without blocking, then relay both ways
/// until both have ended (half-close passed on each way) or either side fails (then both are closed, a reset
/// passed on as a reset). Lives on the loop thread only.</summary>
internal sealed class Connection
{
    private enum Phase { Resolving, Connecting, Relaying, Closed }

    private readonly ProxyServer _server;
    private readonly EventLoop _loop;
    private readonly int _client;
    private int _backend = -1;
    private Phase _phase = Phase.Resolving;
    private IoSource? _clientSource, _backendSource;
    // A slim timer (a record in the loop's timer table, no object): one is armed per connection while it connects.
    private SlimTimer _connectTimer;
    private Direction? _toBackend, _toClient;
    private int _descriptorRetries;

    // Out of descriptors after accept: the client is kept and the connect retried this many times (each after
    // the accept-retry delay) before it is given up.
    private const int MaxDescriptorRetries = 50;

    public Connection(ProxyServer server, int client, long id)
    {
        _server = server;
        _loop = server.Loop;
        _client = client;
        Id = id;
    }

    /// <summary>A number for log lines.</summary>
    public long Id { get; }

    public bool IsClosed => _phase == Phase.Closed;

    /// <summary>Bytes delivered client→backend and backend→client.</summary>
    public long BytesToBackend => _toBackend?.BytesRelayed ?? 0;
    public long BytesToClient => _toClient?.BytesRelayed ?? 0;

    /// <summary>Starts the backend connection, right after the accept; name resolution (when the target is a name)
    /// runs off the loop.</summary>
    public void Begin(BackendTarget target)
    {
        if (target.FixedEndpoint is { } endpoint)
        {
            Connect(endpoint, budgetChecked: true); // the accept asked the budget for the whole connection just now
            return;
        }
        target.ResolveAllAsync().ContinueWith(task => _loop.Post(() =>
        {
            if (_phase != Phase.Resolving)
                return;
            if (task.IsCompletedSuccessfully)
            {
                _candidates = task.Result;
                Connect(_candidates[0]);
            }
            else
                FailConnect(Errno.EINVAL, $"cannot resolve {target.Host}: {task.Exception?.GetBaseException().Message}");
        }), TaskScheduler.Default);
    }

    private EndPoint? _endpoint;
    private IReadOnlyList<EndPoint>? _candidates;
    private int _nextCandidate = 1;

    private unsafe void Connect(EndPoint endpoint, bool budgetChecked = false)
    {
        _phase = Phase.Connecting;
        _endpoint = endpoint;
        if (!budgetChecked && !_server.MayOpen(1))
        {
            RetryWhenDescriptorsFree(endpoint, Errno.EMFILE); // the runtime's reserve first (DescriptorBudget)
            return;
        }
        try
        {
            _backend = Sockets.OpenStreamSocket(Sockets.NativeFamily(endpoint));
            if (endpoint is IPEndPoint)
                Sockets.SetIntOption(_backend, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY, 1);
        }
        catch (PosixException e) when (IsOutOfDescriptors(e.Errno))
        {
            RetryWhenDescriptorsFree(endpoint, e.Errno);
            return;
        }
        catch (PosixException e)
        {
            FailConnect(e.Errno, null);
            return;
        }
        // A fixed target's address is serialized once for the proxy, not once per connection.
        var address = ReferenceEquals(endpoint, _server.Options.Target.FixedEndpoint) ? _server.FixedAddress! : endpoint.Serialize();
        int rc;
        fixed (byte* sockaddr = address.Buffer.Span)
            rc = Sockets.connect(_backend, sockaddr, (uint)address.Size);
        int errno = rc == 0 ? 0 : Errno.Last;
        try
        {
            _backendSource = _loop.AddIo(_backend, Interest.Writable, (_, readiness) => OnBackend(readiness), description: $"backend of connection {Id}");
        }
        catch (DescriptorOutOfRangeException)
        {
            // select's FD_SETSIZE: the backend cannot watch one more descriptor, like EMFILE.
            ReleaseBackend();
            RetryWhenDescriptorsFree(endpoint, Errno.EMFILE);
            return;
        }
        if (rc == 0)
        {
            OnConnected(endpoint);
        }
        else if (errno == Errno.EINPROGRESS || errno == Errno.EINTR)
        {
            // EINTR leaves the connect running, as EINPROGRESS does. (EAGAIN, a Unix socket whose listener's
            // backlog is full, starts nothing: it fails the connect below, as in systemd-socket-proxyd.)
            _connectTimer = _loop.AddSlimTimer(_server.Options.ConnectTimeout, _ => FailConnect(Errno.ETIMEDOUT, null),
                accuracy: TimeSpan.FromMilliseconds(100));
        }
        else
        {
            FailConnect(errno, null);
        }
    }

    private void OnConnected(EndPoint endpoint)
    {
        _connectTimer.Dispose();
        _connectTimer = default;
        try
        {
            // Pipes for splice come later, only for a direction that turns out to carry a bulk stream (RelayBuffer).
            _toBackend = new Direction(_client, _backend, RelayBuffer.ForNewConnection(_server.Buffers), _server.Counters.ToBackend, _server.BulkBuffer);
            _toClient = new Direction(_backend, _client, RelayBuffer.ForNewConnection(_server.Buffers), _server.Counters.ToClients, _server.BulkBuffer);
            _clientSource = _loop.AddIo(_client, Interest.Readable, (_, readiness) => OnClient(readiness), description: $"client of connection {Id}");
        }
        catch (DescriptorOutOfRangeException)
        {
            // None the backend can watch (select's FD_SETSIZE): give back all but the client, retry.
            ReleaseBackend();
            RetryWhenDescriptorsFree(endpoint, Errno.EMFILE);
            return;
        }
        _phase = Phase.Relaying;
        _server.OnRelayStarted();
        // A client that speaks first (HTTP, TLS) has its request waiting by now: relaying it at once saves the
        // loop an event and an iteration per connection (haproxy reads it even before it connects). A client
        // that waits for the server costs one read that says EAGAIN.
        Relay(_clientSource!, Readiness.Readable, _toBackend!, _toClient!);
    }

    private void ReleaseBackend()
    {
        _toBackend?.Dispose();
        _toClient?.Dispose();
        _toBackend = _toClient = null;
        _backendSource?.DisposeBeforeClose();
        _backendSource = null;
        LibC.CloseQuietly(_backend);
        _backend = -1;
    }

    private static bool IsOutOfDescriptors(int errno) => errno == Errno.EMFILE || errno == Errno.ENFILE;

    /// <summary>EMFILE after the accept: not the backend's fault and not the client's. The client waits (its bytes
    /// stay in its socket buffer), accepting pauses, and the connect is tried again after the pause.</summary>
    private void RetryWhenDescriptorsFree(EndPoint endpoint, int errno)
    {
        _server.OnOutOfDescriptors(errno);
        if (++_descriptorRetries > MaxDescriptorRetries)
        {
            _server.Log.ConnectionAborted(Id, "descriptors", errno);
            Close(abortive: false);
            return;
        }
        _phase = Phase.Resolving;
        _connectTimer = _loop.AddSlimTimer(_server.Options.AcceptRetryDelay, _ =>
        {
            _connectTimer = default;
            Connect(endpoint);
        }, accuracy: TimeSpan.FromMilliseconds(10));
    }

    private void FailConnect(int errno, string? detail)
    {
        if (_phase == Phase.Closed)
            return;
        // A name with several addresses (localhost: ::1 and 127.0.0.1) is tried address by address, in
        // getaddrinfo's order, before the client is given up.
        if (_candidates is not null && _nextCandidate < _candidates.Count && _phase == Phase.Connecting)
        {
            _connectTimer.Dispose();
            _connectTimer = default;
            ReleaseBackend();
            Connect(_candidates[_nextCandidate++]);
            return;
        }
        _server.OnBackendUnreachable(errno, detail, resolving: _phase == Phase.Resolving);
        Close(abortive: false);
    }

    private void OnBackend(Readiness readiness)
    {
        if (_phase == Phase.Connecting)
        {
            if (readiness == Readiness.Writable && _server.ConnectFailureFlagged)
            {
                OnConnected(_endpoint!); // no error flagged: connected (one getsockopt less per connection)
                return;
            }
            int error = Sockets.GetIntOption(_backend, Sockets.SOL_SOCKET, Sockets.SO_ERROR);
            if (error != 0)
                FailConnect(Math.Abs(error), null);
            else if ((readiness & (Readiness.Writable | Readiness.Hangup | Readiness.Error)) != 0)
                OnConnected(_endpoint!);
            return;
        }
        if (_phase == Phase.Relaying)
            Relay(_backendSource!, readiness, _toClient!, _toBackend!);
    }

    private void OnClient(Readiness readiness)
    {
        if (_phase == Phase.Relaying)
            Relay(_clientSource!, readiness, _toBackend!, _toClient!);
    }

    /// <summary>A readiness on one socket: <paramref name="reading"/> is the direction that reads it,
    /// <paramref name="writing"/> the one that writes to it.</summary>
    private void Relay(IoSource source, Readiness readiness, Direction reading, Direction writing)
    {
        // A hangup or an error is reported whatever the interest; reading or writing is what surfaces it.
        bool surfaced = (readiness & (Readiness.Hangup | Readiness.Error)) != 0;
        bool readable = surfaced || (readiness & (Readiness.Readable | Readiness.ReadHangup)) != 0;
        int error = reading.Pump(readable && !reading.SourceEnded);
        if (error != 0)
        {
            Abort(reading, error);
            return;
        }
        if (writing.WantsWrite || (readiness & Readiness.Writable) != 0 || surfaced)
        {
            error = writing.Pump(sourceReadable: false);
            if (error != 0)
            {
                Abort(writing, error);
                return;
            }
        }
        if (_toBackend!.Finished && _toClient!.Finished)
        {
            Close(abortive: false); // close sends each side the FIN a shutdown would have: one system call less each
            return;
        }
        _toBackend.PassEndOfStream();
        _toClient!.PassEndOfStream();
        UpdateInterest(source, readiness);
    }

    /// <summary>Level-triggered interest that follows the buffers: read a socket while its direction's buffer is
    /// empty, write it while the other direction holds bytes. Pausing is a change of interest (epoll_ctl MOD);
    /// only a socket that hung up while nothing is wanted from it leaves the poller (hangups and errors are
    /// reported whatever the interest, and would otherwise wake the loop while the other way drains).</summary>
    private void UpdateInterest(IoSource? reporting = null, Readiness readiness = Readiness.None)
    {
        Apply(_clientSource!, (_toBackend!.WantsRead ? Interest.Readable : 0) | (_toClient!.WantsWrite ? Interest.Writable : 0),
            reporting == _clientSource ? readiness : Readiness.None);
        Apply(_backendSource!, (_toClient.WantsRead ? Interest.Readable : 0) | (_toBackend.WantsWrite ? Interest.Writable : 0),
            reporting == _backendSource ? readiness : Readiness.None);
    }

    private static void Apply(IoSource source, Interest wanted, Readiness reported)
    {
        if (wanted == Interest.None && (reported & (Readiness.Hangup | Readiness.Error)) != 0)
        {
            if (source.State != SourceState.Off)
                source.State = SourceState.Off;
            return;
        }
        if (source.Interest != wanted)
            source.SetInterest(wanted);
        if (source.State == SourceState.Off && wanted != Interest.None)
            source.State = SourceState.On;
    }

    private void Abort(Direction failed, int errno)
    {
        _server.Log.ConnectionAborted(Id, failed.Source == _client ? "client" : "backend", errno);
        Close(abortive: errno == Errno.ECONNRESET || errno == Errno.EPIPE);
    }

    /// <summary>Closes both sockets. <paramref name="abortive"/> passes a reset on (close with SO_LINGER 0).</summary>
    public void Close(bool abortive)
    {
        if (_phase == Phase.Closed)
            return;
        _phase = Phase.Closed;
        _connectTimer.Dispose();
        // Both sockets are closed below and were never duplicated: epoll drops them from its set with the close.
        _clientSource?.DisposeBeforeClose();
        _backendSource?.DisposeBeforeClose();
        if (abortive)
        {
            Sockets.SetAbortiveClose(_client);
            if (_backend >= 0)
                Sockets.SetAbortiveClose(_backend);
        }
        LibC.CloseQuietly(_client);
        LibC.CloseQuietly(_backend);
        _toBackend?.Dispose();
        _toClient?.Dispose();
        _server.OnConnectionClosed(this);
    }
}
