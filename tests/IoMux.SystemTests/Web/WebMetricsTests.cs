using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using IoMux.Interop;
using IoMux.Loop;
using IoMux.Tests.Proxy;
using IoMux.Web;
using IoMux.Web.Http;
using Microsoft.Extensions.Logging;

namespace IoMux.Tests.Web;

/// <summary>The IoMux.Web meter read with a <see cref="MeterListener"/>, as dotnet-counters and OpenTelemetry read
/// it, and the access log read through a capturing ILogger.</summary>
[Category("System")]
[NonParallelizable]
public sealed class WebMetricsTests
{
    private string _root = null!;

    [OneTimeSetUp]
    public void MakeRoot()
    {
        _root = Directory.CreateTempSubdirectory("iomux-metrics-").FullName;
        File.WriteAllText(Path.Combine(_root, "a.txt"), "alpha");
    }

    [OneTimeTearDown]
    public void RemoveRoot() => Directory.Delete(_root, recursive: true);

    /// <summary>One histogram measurement as a listener saw it.</summary>
    private sealed record Measured(string Instrument, string? Unit, double Value, Dictionary<string, object?> Tags)
    {
        public object? this[string tag] => Tags.GetValueOrDefault(tag);
    }

    /// <summary>What a listener saw: the histograms' measurements (kept only when <c>keep</c>: the allocation test
    /// counts them instead), responses by status, the last observed connection counts, accept pauses.</summary>
    private sealed class Readings : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly bool _keep;
        private readonly List<Measured> _measured = [];
        public readonly long[] Responses = new long[1000];
        public long Active, Accepted, Pauses, OtherTags;

        public Readings(bool keep = true)
        {
            _keep = keep;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "IoMux.Web")
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
            {
                if (instrument.Name == "http.server.request.duration")
                {
                    // Counted without allocating (the allocation test runs with this listener on): the status tag is
                    // found by name, wherever the TagList put it.
                    int status = 0;
                    foreach (var tag in tags)
                    {
                        if (tag.Key == "http.response.status_code" && tag.Value is int code)
                            status = code;
                    }
                    if (status is >= 100 and < 1000)
                        Interlocked.Increment(ref Responses[status]);
                    else
                        Interlocked.Increment(ref OtherTags); // checked outside: an assertion here would allocate
                }
                if (!_keep)
                    return;
                var copy = new Dictionary<string, object?>();
                foreach (var tag in tags)
                    copy[tag.Key] = tag.Value;
                lock (_measured)
                    _measured.Add(new Measured(instrument.Name, instrument.Unit, value, copy));
            });
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
            {
                switch (instrument.Name)
                {
                    case "iomux.web.active_connections":
                        Active = value;
                        break;
                    case "iomux.web.accepted_connections":
                        Accepted = value;
                        break;
                    case "iomux.web.accept.pauses":
                        Interlocked.Add(ref Pauses, value);
                        break;
                }
            });
            _listener.Start();
        }

        public void Observe() => _listener.RecordObservableInstruments();

        /// <summary>The measurements of <paramref name="instrument"/> so far, in order; with <paramref name="port"/>,
        /// only those of that server (requests carry no port: the fixture runs alone, and each test's server is its own).</summary>
        public List<Measured> Of(string instrument, int? port = null)
        {
            lock (_measured)
                return _measured.Where(m => m.Instrument == instrument && (port is null || Equals(m["server.port"], port))).ToList();
        }

        public void Dispose() => _listener.Dispose();
    }

    [Test] // every read bounded by RawHttp's receive timeout
    public void ResponsesAreCountedByStatusAndConnectionsObserved()
    {
        using var readings = new Readings();
        using var server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root, new HttpServerOptions { ThreadCount = 1 });
        readings.Observe();
        long activeBefore = readings.Active, acceptedBefore = readings.Accepted;
        long okBefore = readings.Responses[200], missingBefore = readings.Responses[404];

        using (var socket = RawHttp.Connect(server.Endpoint))
        {
            var buffer = new byte[4096];
            foreach (var target in new[] { "/a.txt", "/a.txt", "/missing", "/a.txt" })
            {
                socket.Send(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
                Assert.That(socket.Receive(buffer), Is.GreaterThan(0));
            }
            // The loop counts a response once its last byte is written, which can be after the client has read it:
            // wait (bounded) until all four are counted, then check that no more were.
            Assert.That(ProxyProcess.Eventually(() =>
            {
                readings.Observe();
                return readings.Responses[200] - okBefore >= 3 && readings.Responses[404] - missingBefore >= 1;
            }, TimeSpan.FromSeconds(10)), Is.True, $"four responses counted: 200 x{readings.Responses[200] - okBefore}, 404 x{readings.Responses[404] - missingBefore}");
            Assert.That(readings.Active, Is.EqualTo(activeBefore + 1), "the open connection");
            Assert.That(readings.Accepted, Is.EqualTo(acceptedBefore + 1));
            Assert.That(readings.Responses[200] - okBefore, Is.EqualTo(3));
            Assert.That(readings.Responses[404] - missingBefore, Is.EqualTo(1));
        }
        Assert.That(ProxyProcess.Eventually(() => { readings.Observe(); return readings.Active == activeBefore; }, TimeSpan.FromSeconds(10)),
            Is.True, "the closed connection is no longer active");
        server.Dispose();
        readings.Observe();
        Assert.That(readings.Accepted, Is.EqualTo(acceptedBefore + 1), "accepted stays monotonic when a server is gone");
    }

    /// <summary>The handler the request-duration tests run: /slow takes 150 ms, /fail throws, anything else is 404.</summary>
    private static void SlowFailOrMissing(RequestView request, ResponseBuilder response)
    {
        if (request.Path.SequenceEqual("/slow"u8))
        {
            Thread.Sleep(150); // a known server-side delay the duration must cover
            response.Send("done"u8);
        }
        else if (request.Path.SequenceEqual("/fail"u8))
        {
            throw new InvalidOperationException("the handler failed on purpose");
        }
        else
        {
            response.Status = 404;
            response.Send("missing"u8);
        }
    }

    /// <summary>http.server.request.duration, per OpenTelemetry's HTTP semantic conventions: a histogram in seconds
    /// with http.request.method, url.scheme, http.response.status_code and network.protocol.version; a 404 records
    /// 404; a failing handler records error.type (the exception's type) with its 500; a malformed request records
    /// its 400 with the method "_OTHER"; the duration covers the handler's delay.</summary>
    [Test] // every read bounded by RawHttp's receive timeout
    public void RequestDurationIsRecordedWithTheHttpAttributes()
    {
        using var readings = new Readings();
        using var server = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), SlowFailOrMissing,
            new HttpServerOptions { ThreadCount = 1, MaxRequestBodySize = 64 });
        using (var socket = RawHttp.Connect(server.Endpoint))
        {
            var buffer = new byte[4096];
            foreach (var request in new[] { "GET /slow HTTP/1.1", "POST /nothing HTTP/1.1\r\nContent-Length: 2", "GET /nothing HTTP/1.0" })
            {
                socket.Send(Encoding.ASCII.GetBytes($"{request}\r\nHost: t\r\n\r\n{(request.StartsWith("POST") ? "hi" : "")}"));
                Assert.That(socket.Receive(buffer), Is.GreaterThan(0));
            }
        }
        Assert.That(RawHttp.Exchange(server.Endpoint, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n").Status, Is.EqualTo(500));
        Assert.That(RawHttp.Exchange(server.Endpoint, "BROKEN\r\n\r\n").Status, Is.EqualTo(400));
        // A response is recorded when its last byte is in the socket, which the client saw: no wait needed.
        var requests = readings.Of("http.server.request.duration");
        Assert.That(requests, Has.Count.EqualTo(5), string.Join("\n", requests));
        Assert.That(requests.Select(r => r.Unit).Distinct(), Is.EqualTo(new[] { "s" }));
        var (slow, post, missing, fail, broken) = (requests[0], requests[1], requests[2], requests[3], requests[4]);
        Assert.Multiple(() =>
        {
            Assert.That(slow.Tags, Is.EquivalentTo(new Dictionary<string, object?>
            {
                ["http.request.method"] = "GET", ["url.scheme"] = "http", ["http.response.status_code"] = 200, ["network.protocol.version"] = "1.1",
            }));
            Assert.That(slow.Value, Is.InRange(0.150, 30.0), "the handler slept 150 ms");
            Assert.That(missing["http.response.status_code"], Is.EqualTo(404));
            Assert.That(missing["network.protocol.version"], Is.EqualTo("1.0"));
            Assert.That(missing.Tags, Does.Not.ContainKey("error.type"), "a 4xx is the client's error, not the server's");
            Assert.That(missing.Value, Is.LessThan(slow.Value));
            Assert.That(post["http.request.method"], Is.EqualTo("POST"));
            Assert.That(fail["http.response.status_code"], Is.EqualTo(500));
            Assert.That(fail["error.type"], Is.EqualTo("System.InvalidOperationException"));
            Assert.That(broken["http.response.status_code"], Is.EqualTo(400));
            Assert.That(broken["http.request.method"], Is.EqualTo("_OTHER"));
        });
    }

    /// <summary>iomux.web.connection.duration, after kestrel.connection.duration: a histogram in seconds per
    /// connection with the listener's network.transport, network.type, server.address and server.port, the
    /// protocol's name and version, and error.type when the connection ended badly (Kestrel's values).</summary>
    [Test] // every read bounded by RawHttp's receive timeout, every wait by Eventually
    public void ConnectionDurationIsRecordedWithTheEndpointAndTheReason()
    {
        using var readings = new Readings();
        using var server = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), SlowFailOrMissing, new HttpServerOptions { ThreadCount = 1 });
        using (var socket = RawHttp.Connect(server.Endpoint))
        {
            socket.Send(Encoding.ASCII.GetBytes("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"));
            Assert.That(socket.Receive(new byte[4096]), Is.GreaterThan(0));
            Thread.Sleep(200); // the connection stays open at least this long
        }
        Assert.That(ProxyProcess.Eventually(() => readings.Of("iomux.web.connection.duration", server.Endpoint.Port).Count == 1, TimeSpan.FromSeconds(10)), Is.True,
            "the closed connection was not recorded");
        Assert.That(RawHttp.Exchange(server.Endpoint, "BROKEN\r\n\r\n").Status, Is.EqualTo(400));
        Assert.That(RawHttp.Exchange(server.Endpoint, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n").Status, Is.EqualTo(500));
        Assert.That(ProxyProcess.Eventually(() => readings.Of("iomux.web.connection.duration", server.Endpoint.Port).Count == 3, TimeSpan.FromSeconds(10)), Is.True,
            "the closed connections were not recorded");
        var connections = readings.Of("iomux.web.connection.duration", server.Endpoint.Port);
        var clean = connections[0];
        Assert.Multiple(() =>
        {
            Assert.That(clean.Unit, Is.EqualTo("s"));
            Assert.That(clean.Tags, Is.EquivalentTo(new Dictionary<string, object?>
            {
                ["network.protocol.name"] = "http", ["network.protocol.version"] = "1.1", ["network.transport"] = "tcp",
                ["network.type"] = "ipv4", ["server.address"] = "127.0.0.1", ["server.port"] = server.Endpoint.Port,
            }));
            Assert.That(clean.Value, Is.InRange(0.2, 30.0), "the connection was held open 200 ms");
            // The two later connections close when their clients do, in either order.
            Assert.That(connections.Skip(1).Select(c => c["error.type"]), Is.EquivalentTo(new[] { "invalid_request_headers", "app_error" }));
        });
    }

    /// <summary>A head that does not complete within the header timeout: the 408 is recorded as a request of unknown
    /// method and version, and the connection ends with Kestrel's request_headers_timeout.</summary>
    [Test] // bounded by RawHttp's deadline and the Eventually
    public void AHeaderTimeoutIsRecordedAsSuch()
    {
        using var readings = new Readings();
        using var server = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), SlowFailOrMissing,
            new HttpServerOptions { ThreadCount = 1, HeaderTimeout = TimeSpan.FromMilliseconds(300) });
        using (var socket = RawHttp.Connect(server.Endpoint))
        {
            socket.Send(Encoding.ASCII.GetBytes("GET /slow HTTP/1.1\r\nHost: t\r\n")); // no blank line: the head never ends
            Assert.That(RawHttp.Split(RawHttp.ReadToEnd(socket)).Status, Is.EqualTo(408));
        }
        Assert.That(ProxyProcess.Eventually(() => readings.Of("iomux.web.connection.duration", server.Endpoint.Port).Count == 1, TimeSpan.FromSeconds(10)),
            Is.True, "the timed-out connection was not recorded");
        var connection = readings.Of("iomux.web.connection.duration", server.Endpoint.Port)[0];
        Assert.That(connection["error.type"], Is.EqualTo("request_headers_timeout"));
        Assert.That(connection.Value, Is.GreaterThanOrEqualTo(0.3), "the connection lasted the header timeout");
        var request = readings.Of("http.server.request.duration").Single();
        Assert.That(request.Tags, Is.EquivalentTo(new Dictionary<string, object?>
        {
            ["http.request.method"] = "_OTHER", ["url.scheme"] = "http", ["http.response.status_code"] = 408,
        }), "no version: the head never said one");
    }

    /// <summary>Measuring allocates nothing on the request path: with a listener on every instrument (the two
    /// histograms included), the round trips allocate what they allocate with nobody listening (tags are pre-built
    /// pairs in a TagList, held inline). The absolute figure, 0 B per request in
    /// Release, is BenchmarkDotNet's (WebRoundTrip.HelloRequest); this test runs in Debug, whose code allocates a
    /// little of its own.</summary>
    [Test] // every read bounded by the socket's receive timeout
    public void CountingAddsNoAllocationPerRequest()
    {
        double quiet = BytesPerRequest(Hello, "/", listening: false, out _);
        double counted = BytesPerRequest(Hello, "/", listening: true, out long responses);
        Assert.That(responses, Is.GreaterThanOrEqualTo(6200), "the listener saw every response");
        TestContext.Out.WriteLine($"{quiet:F1} B per request unobserved, {counted:F1} B measured ({responses} responses seen)");
        Assert.That(counted - quiet, Is.LessThan(8), $"{quiet:F1} B per request unobserved, {counted:F1} B measured");
    }

    /// <summary>A static file, a range of it, or a 304 costs no allocation a hello does not: the validators and
    /// ranges are formatted into buffers the responder owns.</summary>
    [TestCase("/a.txt", "")]
    [TestCase("/a.txt", "Range: bytes=1-3\r\n")]
    [TestCase("/a.txt", "If-None-Match: *\r\n")]
    public void AStaticAnswerAllocatesNoMoreThanHello(string target, string fields)
    {
        double hello = BytesPerRequest(Hello, "/", listening: false, out _);
        double file = BytesPerRequest(endpoint => HttpServer.StaticFiles(endpoint, _root, new HttpServerOptions { ThreadCount = 1 }), target + " HTTP/1.1\r\n" + fields,
            listening: false, out _);
        Assert.That(file - hello, Is.LessThan(8), $"{hello:F1} B per hello, {file:F1} B per static answer");
    }

    private static HttpServer Hello(IPEndPoint endpoint) => HttpServer.Hello(endpoint, new HttpServerOptions { ThreadCount = 1 });

    private static double BytesPerRequest(Func<IPEndPoint, HttpServer> start, string target, bool listening, out long responses)
    {
        using var readings = listening ? new Readings(keep: false) : null;
        using var server = start(new IPEndPoint(IPAddress.Loopback, 0));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 10_000 };
        socket.Connect(server.Endpoint);
        string line = target.Contains(' ') ? target : target + " HTTP/1.1\r\n";
        var request = Encoding.ASCII.GetBytes($"GET {line}Host: t\r\n\r\n");
        var buffer = new byte[4096];
        void RoundTrips(int count)
        {
            int received = 0;
            for (int i = 0; i < count; i++) // no assertion inside: NUnit's constraints allocate
            {
                socket.Send(request);
                received += socket.Receive(buffer) > 0 ? 1 : 0;
            }
            Assert.That(received, Is.EqualTo(count));
        }
        RoundTrips(200); // warm-up: every path jitted, every lazy buffer made
        // The allocations of the whole process are counted, and other threads (timers, the test host) allocate
        // now and then: the least of three rounds is the request path's own share.
        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            RoundTrips(2000);
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        // The loop counts a response after writing it, so the client can read the last one before it is counted:
        // wait (bounded) for the count of all 200 + 3 x 2000 round trips to arrive before reading it.
        if (readings is not null)
            ProxyProcess.Eventually(() => readings.Responses.Sum() >= 200 + 3 * 2000, TimeSpan.FromSeconds(10));
        responses = readings?.Responses.Sum() ?? 0;
        Assert.That(readings?.OtherTags ?? 0, Is.Zero);
        return least / 2000.0;
    }

    [Test]
    public void AnAcceptPauseIsCounted()
    {
        using var readings = new Readings();
        using var loop = new EventLoop(PollerFactory.Create());
        using var listening = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { Blocking = false };
        listening.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listening.Listen();
        var source = loop.AddIo((int)listening.Handle, Interest.Readable, (_, _) => { });
        using var gate = new AcceptGate(loop, source, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new ServerDescriptors(perConnection: 1));
        Assert.That(gate.Failed(Errno.EMFILE), Is.False);
        Assert.That(gate.Failed(Errno.EAGAIN), Is.False);
        Assert.That(readings.Pauses, Is.EqualTo(1), "EMFILE pauses accepting; EAGAIN is no pause");
        source.Dispose();
    }

    private sealed class CapturingLogger : ILogger
    {
        public readonly List<(LogLevel Level, string Message)> Lines = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines)
                Lines.Add((logLevel, formatter(state, exception)));
        }

        public string[] Messages()
        {
            lock (Lines)
                return Lines.Select(l => l.Message).ToArray();
        }
    }

    [Test] // bounded by RawHttp's deadline and the Eventually
    public void TheAccessLogHasOneLinePerResponse()
    {
        var log = new CapturingLogger();
        using var server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root, new HttpServerOptions { ThreadCount = 1, AccessLog = log });
        int okBytes;
        using (var socket = RawHttp.Connect(server.Endpoint))
        {
            socket.Send(Encoding.ASCII.GetBytes("GET /a.txt?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
            okBytes = RawHttp.ReadToEnd(socket).Length;
        }
        var (status, _, _) = RawHttp.Exchange(server.Endpoint, "BROKEN\r\n\r\n");
        Assert.That(status, Is.EqualTo(400));
        Assert.That(ProxyProcess.Eventually(() => log.Messages().Length >= 2, TimeSpan.FromSeconds(10)), Is.True, string.Join("\n", log.Messages()));
        var lines = log.Messages();
        Assert.That(lines, Has.Length.EqualTo(2));
        var ok = Regex.Match(lines[0], @"^GET /a\.txt\?q=1 200 (\d+) (\d+\.\d+) ms$");
        Assert.That(ok.Success, Is.True, lines[0]);
        Assert.That(int.Parse(ok.Groups[1].Value), Is.EqualTo(okBytes), "the bytes sent, head included");
        Assert.That(lines[1], Does.Match(@"^- - 400 \d+ \d+\.\d+ ms$"));
        Assert.That(log.Lines.All(l => l.Level == LogLevel.Information), Is.True);
    }
}
