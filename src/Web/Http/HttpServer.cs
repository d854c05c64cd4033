using System.Net;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Web.Http;

/// <summary>Limits and timeouts of an <see cref="HttpServer"/>.</summary>
public sealed class HttpServerOptions
{
    // The fixed limits are static readonly rather than const: a const is copied into the caller's assembly at
    // compile time, so raising one in a later version would leave compiled callers checking the old value.

    /// <summary>Longest request line accepted (8 KiB, nginx's large_client_header_buffers default); longer is 414.</summary>
    public static readonly int RequestLineSizeLimit = HttpRequestParser.MaxRequestLine;

    /// <summary>Longest request head (request line and header fields) accepted (16 KiB); longer is 431.</summary>
    public static readonly int RequestHeadSizeLimit = HttpRequestParser.MaxHead;

    /// <summary>Most header fields accepted in a request (100, Kestrel's MaxRequestHeaderCount default); more is 431.</summary>
    public static readonly int RequestHeaderCountLimit = HttpRequestParser.MaxHeaders;

    /// <summary>Most bytes of header fields a handler may add to a response (name, ": ", value and CRLF each: 2048);
    /// <see cref="ResponseBuilder.AddHeader(string, string)"/> throws past it.</summary>
    public static readonly int ResponseHeaderSizeLimit = ResponseBuilder.MaxHeaderBytes;

    /// <summary>The largest <see cref="MaxRequestBodySize"/> a server accepts (16 MiB: the body is buffered per connection).</summary>
    public static readonly int RequestBodySizeLimit = HttpServer.MaxRequestBodyLimit;

    /// <summary>Loop threads, one event loop and one SO_REUSEPORT listener each (default: one per core). Named as
    /// <c>IoMuxTransportOptions.ThreadCount</c> and <c>EventLoopHostOptions.ThreadCount</c>.</summary>
    public int ThreadCount { get; init; } = Environment.ProcessorCount;

    /// <summary>How long a request head may take to arrive once it started (slowloris); 408 and close after. More than zero,
    /// at most 365 days (the timeouts are checked when the server is made).</summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a kept-alive connection may stay idle between requests. A new connection gets
    /// <see cref="HeaderTimeout"/> for its first byte instead, as nginx's client_header_timeout. More than zero, at
    /// most 365 days.</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a response may wait for the client to take more of it: measured between two writes that
    /// make progress, not over the whole response (nginx's send_timeout), so a slow download lasts as long as it
    /// moves. Past it the connection is closed. More than zero, at most 365 days.</summary>
    public TimeSpan SendTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Connections per loop thread; past it the thread's listener is not polled.</summary>
    public int MaxConnectionsPerThread { get; init; } = 10_000;

    /// <summary>Where the server logs (start, accept failures, failing handlers); never per request. Default: nowhere.</summary>
    public Microsoft.Extensions.Logging.ILogger Logger { get; init; } = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    /// <summary>The access log: one Information line per response ("GET /a.txt 200 1234 0.150 ms": method, target,
    /// status, bytes sent with the head, duration from the request to the last byte in the socket). Null (the
    /// default): no log, and nothing on the request path pays for it.</summary>
    public Microsoft.Extensions.Logging.ILogger? AccessLog { get; init; }

    /// <summary>Largest request content (by Content-Length) a <see cref="HttpServer.Create"/> server takes and
    /// hands to its handler whole; larger content, and any chunked content, is answered 413. Each connection's
    /// input buffer grows by this much, so keep it small; the content must arrive within <see cref="HeaderTimeout"/>
    /// of the head's start, like the head. Default 0: no request content. The static and hello servers take none
    /// whatever this says.</summary>
    public int MaxRequestBodySize { get; init; }
}

/// <summary>Answers one request: writes the response into the connection (head, small body, or a file to send).</summary>
internal abstract class HttpResponder : IDisposable
{
    public abstract void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target);

    /// <summary>Whether the resource could answer <paramref name="method"/> at all: one that cannot is answered 405
    /// before its content is considered (RFC 9110 §15.5.6).</summary>
    public virtual bool Allows(HttpMethodKind method) => true;

    /// <summary>Whether request content (up to <see cref="HttpServerOptions.MaxRequestBodySize"/>) is read and handed on.</summary>
    public virtual bool TakesBodies => false;

    /// <summary>Releases what the responder holds (the static root's directory descriptor).</summary>
    public virtual void Dispose() { }
}

/// <summary>An HTTP/1.1 server on IoMux: one event loop per thread, each accepting on its own member of a
/// <see cref="ListenerGroup"/>, so connections stay on the thread that accepted them.</summary>
public sealed class HttpServer : IDisposable
{
    private readonly ListenerGroup _group;
    private readonly HttpWorker[] _workers;
    private readonly Thread[] _threads;

    /// <summary>The longest timeout the options take (a deadline is the loop's time plus it).</summary>
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(365);

    private HttpServer(IPEndPoint endpoint, HttpServerOptions options, Func<HttpResponder> responder, string? backend)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ThreadCount, 1, nameof(options.ThreadCount));
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRequestBodySize, nameof(options.MaxRequestBodySize));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.HeaderTimeout, TimeSpan.Zero, nameof(options.HeaderTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.KeepAliveTimeout, TimeSpan.Zero, nameof(options.KeepAliveTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.SendTimeout, TimeSpan.Zero, nameof(options.SendTimeout));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxRequestBodySize, MaxRequestBodyLimit, nameof(options.MaxRequestBodySize));
        // A deadline is the loop's time plus the timeout: TimeSpan.MaxValue ("never") would overflow it on the first
        // request, on the loop thread. A year stands for never and is refused here, where the caller can see it.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.HeaderTimeout, MaxTimeout, nameof(options.HeaderTimeout));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.KeepAliveTimeout, MaxTimeout, nameof(options.KeepAliveTimeout));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.SendTimeout, MaxTimeout, nameof(options.SendTimeout));
        _group = ListenerGroup.Bind(endpoint, options.ThreadCount);
        _workers = new HttpWorker[options.ThreadCount];
        _threads = new Thread[options.ThreadCount];
        var descriptors = new ServerDescriptors(perConnection: 2); // the socket, and a file while one is sent
        var endpointTags = new WebMetrics.EndpointTags(_group.Endpoint);
        try
        {
            for (int i = 0; i < options.ThreadCount; i++)
            {
                var loop = new EventLoop(backend is null ? PollerFactory.Create() : PollerFactory.Create(backend));
                loop.Poller.UseServerSpin(); // catch the next request awake (Poller.SpinBeforeSleep)
                _workers[i] = new HttpWorker(loop, _group.Listeners[i], options, responder(), descriptors) { Endpoint = endpointTags };
                var worker = _workers[i];
                _threads[i] = new Thread(() => worker.Loop.Run()) { IsBackground = true, Name = $"IoMux http {i}" };
            }
        }
        catch
        {
            // A loop that cannot start (an unusable backend, EMFILE) must not leave the listeners bound.
            foreach (var worker in _workers)
            {
                if (worker is null)
                    continue;
                worker.Loop.Dispose();
                worker.Responder.Dispose();
            }
            _group.Dispose();
            throw;
        }
        WebMetrics.Register(_workers);
        foreach (var thread in _threads)
            thread.Start();
    }

    /// <summary>The largest <see cref="HttpServerOptions.MaxRequestBodySize"/> accepted; public as <see cref="HttpServerOptions.RequestBodySizeLimit"/>.</summary>
    internal const int MaxRequestBodyLimit = 16 * 1024 * 1024;

    /// <summary>Serves every request with <paramref name="handler"/>, on the server's loop threads (see
    /// <see cref="HttpHandler"/>). Malformed requests never reach it: they are answered 400/413/414/431/505 as the
    /// static server answers them.</summary>
    public static HttpServer Create(IPEndPoint endpoint, HttpHandler handler, HttpServerOptions? options = null, string? backend = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return new HttpServer(endpoint, options ?? new(), () => new HandlerResponder(handler), backend);
    }

    /// <summary>Serves the files under <paramref name="root"/>: GET and HEAD, one byte range (206/416), ETag and
    /// Last-Modified with 304 for If-None-Match and If-Modified-Since, directories by their index.html (301 to the
    /// slashed path when named without it); docs/SERVERS.md has the whole table.</summary>
    public static HttpServer StaticFiles(IPEndPoint endpoint, string root, HttpServerOptions? options = null, string? backend = null)
    {
        if (StaticRoot.RealPath(Path.GetFullPath(root)) is null)
            throw new DirectoryNotFoundException(root);
        return new HttpServer(endpoint, options ?? new(), () => new StaticFileResponder(root), backend);
    }

    /// <summary>Answers every GET with "Hello, World!" (the benchmark responder).</summary>
    public static HttpServer Hello(IPEndPoint endpoint, HttpServerOptions? options = null, string? backend = null) =>
        new(endpoint, options ?? new(), () => new HelloResponder(), backend);

    /// <summary>The address served (with the port chosen when 0 was asked).</summary>
    public IPEndPoint Endpoint => _group.Endpoint;

    /// <summary>Request heads parsed so far, all threads (approximate while running).</summary>
    internal long HeadParses => _workers.Sum(w => Volatile.Read(ref w.HeadParses));

    /// <summary>Open connections, all threads (approximate while running).</summary>
    public int Connections => _workers.Sum(w => w.Connections);

    /// <summary>Makes every loop of the server a member of <paramref name="watchdog"/>: its pings stop when any of
    /// them stops iterating (see <see cref="LoopWatchdog"/>).</summary>
    public void AttachWatchdog(LoopWatchdog watchdog)
    {
        foreach (var worker in _workers)
            watchdog.AttachLater(worker.Loop);
    }

    /// <summary>Stops every loop, closes every connection and listener.</summary>
    public void Dispose()
    {
        foreach (var worker in _workers)
            worker.Loop.Post(worker.Stop);
        foreach (var thread in _threads)
            thread.Join();
        foreach (var worker in _workers)
        {
            worker.Loop.Dispose();
            worker.Responder.Dispose();
        }
        WebMetrics.Unregister(_workers);
        _group.Dispose();
    }
}

/// <summary>One loop thread of a server: its listener, its connections, its Date cache.</summary>
internal sealed class HttpWorker
{
    private readonly IoSource _listener;
    private readonly AcceptGate _gate;
    private readonly HashSet<HttpConnection> _connections = [];
    private volatile int _count;
    private long _accepted;

    public HttpWorker(EventLoop loop, int listener, HttpServerOptions options, HttpResponder responder, ServerDescriptors descriptors)
    {
        Loop = loop;
        Options = options;
        Responder = responder;
        AccessLog = options.AccessLog;
        MaxRequestBody = responder.TakesBodies ? options.MaxRequestBodySize : 0;
        _listener = loop.AddIo(listener, Interest.Readable, (_, _) => Accept(listener), description: "http listener");
        _gate = new AcceptGate(loop, _listener, options.Logger, descriptors);
    }

    public EventLoop Loop { get; }
    public HttpServerOptions Options { get; }
    public HttpResponder Responder { get; }
    public HttpDate Date { get; } = new();
    public int Connections => _count;

    /// <summary>The listener's attributes for iomux.web.connection.duration.</summary>
    public WebMetrics.EndpointTags Endpoint { get; init; } = WebMetrics.EndpointTags.Unknown;

    /// <summary>Connections accepted since the start (written by the loop thread, read by metric observers).</summary>
    public long Accepted => Volatile.Read(ref _accepted);

    public Microsoft.Extensions.Logging.ILogger? AccessLog { get; }

    /// <summary>How many times a request head was parsed (loop thread only; tests read it after the fact to bound
    /// the work a trickled head costs).</summary>
    public long HeadParses;

    public int MaxRequestBody { get; }

    private void Accept(int listener)
    {
        for (int i = 0; i < 64 && _connections.Count < Options.MaxConnectionsPerThread && _gate.Admits(); i++)
        {
            int fd = LibC.Accept(listener);
            if (fd < 0)
            {
                if (_gate.Failed(-fd))
                    continue;
                break;
            }
            _gate.Accepted();
            Volatile.Write(ref _accepted, _accepted + 1);
            Sockets.SetIntOption(fd, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY, 1);
            try
            {
                _connections.Add(new HttpConnection(this, fd));
            }
            catch (DescriptorOutOfRangeException e)
            {
                _gate.Released();
                _gate.CannotWatch(fd, e);
            }
        }
        _count = _connections.Count;
        if (!_gate.Paused)
            _listener.State = _connections.Count < Options.MaxConnectionsPerThread ? SourceState.On : SourceState.Off;
    }

    public void OnClosed(HttpConnection connection)
    {
        if (_connections.Remove(connection))
            _gate.Released();
        _count = _connections.Count;
        if (_listener.State == SourceState.Off && !_listener.IsDisposed && !_gate.Paused)
            _listener.State = SourceState.On;
    }

    public void Stop()
    {
        _gate.Dispose();
        _listener.Dispose();
        foreach (var connection in _connections.ToArray())
            connection.Close();
        Loop.Exit();
    }
}
