using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>When a connection of the HTTP server closes, and what it answers before: the close that a response
/// promises comes right after its last byte however many writes it took (RFC 9112 §9.6, §6.3), nothing is answered
/// after it, a response in flight is never cut while it moves and always cut when it stops (the send timeout), and
/// an idle new connection gets the header timeout. The keep-alive timeout is long here on purpose: a close that
/// only the keep-alive timer would make fails the exchange's deadline instead of passing unseen.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[NonParallelizable]
public sealed class ConnectionLifecycleTests(string backend)
{
    private const int BigLength = 8 << 20;
    private const int StreamLength = 12 << 20; // more than loopback's socket buffers hold: many writes
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(30), Header = TimeSpan.FromSeconds(1), Send = TimeSpan.FromSeconds(2);

    private string _root = null!;
    private byte[] _big = null!;
    private HttpServer _files = null!, _handler = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _root = Directory.CreateTempSubdirectory("iomux-lifecycle-").FullName;
        _big = new byte[BigLength];
        new Random(19).NextBytes(_big);
        File.WriteAllBytes(Path.Combine(_root, "big.bin"), _big);
        File.WriteAllText(Path.Combine(_root, "a.txt"), "alpha");
        Directory.CreateDirectory(Path.Combine(_root, "sub"));
        File.WriteAllText(Path.Combine(_root, "sub", "index.html"), "sub");
        var options = new HttpServerOptions { ThreadCount = 1, HeaderTimeout = Header, KeepAliveTimeout = KeepAlive, SendTimeout = Send };
        _files = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root, options, backend);
        _handler = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), Handle,
            new HttpServerOptions { ThreadCount = 1, HeaderTimeout = Header, KeepAliveTimeout = KeepAlive, SendTimeout = Send, MaxRequestBodySize = 16 << 20 }, backend);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _files.Dispose();
        _handler.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>/stream: 12 MiB of a known pattern with no length (chunked to HTTP/1.1, close-delimited to HTTP/1.0);
    /// /echo: the request content's length.</summary>
    private static void Handle(RequestView request, ResponseBuilder response)
    {
        if (request.Path.SequenceEqual("/echo"u8))
        {
            response.Send($"{request.Body.Length}");
            return;
        }
        long produced = 0;
        response.SendBody(buffer =>
        {
            int n = (int)Math.Min(buffer.Length, StreamLength - produced);
            for (int i = 0; i < n; i++)
                buffer[i] = (byte)((produced + i) % 251);
            produced += n;
            return n;
        });
    }

    private static Socket Connect(HttpServer server)
    {
        // A small receive buffer: the server's socket fills and every response here needs many writes.
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 32 * 1024 };
        socket.Connect(server.Endpoint);
        return socket;
    }

    public static IEnumerable<TestCaseData> CloseDelimitedResponses()
    {
        yield return new TestCaseData("files", "GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", BigLength).SetName("{m}(Connection: close, a file)");
        yield return new TestCaseData("files", "GET /big.bin HTTP/1.0\r\n\r\n", BigLength).SetName("{m}(HTTP/1.0, a file)");
        yield return new TestCaseData("handler", "GET /stream HTTP/1.0\r\n\r\n", StreamLength).SetName("{m}(HTTP/1.0, a body without a length)");
        yield return new TestCaseData("handler", "GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", -1).SetName("{m}(Connection: close, chunked)");
    }

    /// <summary>Issue 19's first finding: each of these hung for the keep-alive timeout after its last byte.</summary>
    [TestCaseSource(nameof(CloseDelimitedResponses))]
    public void AResponseThatClosesTheConnectionClosesItRightAfterItsLastByte(string server, string request, int contentLength)
    {
        using var socket = Connect(server == "files" ? _files : _handler);
        socket.Send(Encoding.ASCII.GetBytes(request));
        var (bytes, closeAfterLastByte, reset) = RawHttp.ReadUntilClose(socket, RawHttp.Deadline, pauseEveryBytes: 256 * 1024, pause: TimeSpan.FromMilliseconds(5));
        var (status, headers, body) = RawHttp.Split(bytes);
        Assert.That(status, Is.EqualTo(200));
        Assert.That(RawHttp.Header(headers, "Connection"), Is.EqualTo("close"));
        Assert.That(reset, Is.False, "the response ended with a reset instead of a FIN");
        if (contentLength < 0)
            body = RawHttp.Dechunk(body);
        Assert.That(body, Has.Length.EqualTo(contentLength < 0 ? StreamLength : contentLength));
        if (server == "files")
            Assert.That(SHA256.HashData(body), Is.EqualTo(SHA256.HashData(_big)));
        else
            for (int i = 0; i < body.Length; i++)
                if (body[i] != (byte)(i % 251))
                    Assert.Fail($"the streamed body differs at byte {i}");
        Assert.That(closeAfterLastByte, Is.LessThan(TimeSpan.FromSeconds(1)), "the close did not follow the last byte");
    }

    /// <summary>RFC 9112 §9.6: a server that sends "close" must not process further requests on the connection;
    /// every answer to a request that asked for the close says "Connection: close", errors included.</summary>
    [TestCase("GET /a.txt", 200)]
    [TestCase("GET /missing", 404)]
    [TestCase("DELETE /a.txt", 405)]
    [TestCase("GET /sub", 301)]
    public void NothingIsAnsweredAfterARequestThatClosesTheConnection(string first, int status)
    {
        using var socket = Connect(_files);
        socket.Send(Encoding.ASCII.GetBytes($"{first} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        var (bytes, closeAfterLastByte, _) = RawHttp.ReadUntilClose(socket, RawHttp.Deadline);
        var responses = RawHttp.Responses(bytes);
        Assert.That(responses.Select(r => r.Status), Is.EqualTo(new[] { status }), "one answer, to the first request only");
        Assert.That(RawHttp.Header(responses[0].Headers, "Connection"), Is.EqualTo("close"));
        Assert.That(closeAfterLastByte, Is.LessThan(TimeSpan.FromSeconds(1)));
    }

    /// <summary>An HTTP/1.0 request without keep-alive is a close too: a 404 to it says so.</summary>
    [Test]
    public void AnErrorToAnHttp10RequestSaysClose()
    {
        using var socket = Connect(_files);
        socket.Send(Encoding.ASCII.GetBytes("GET /missing HTTP/1.0\r\n\r\nGET /a.txt HTTP/1.0\r\n\r\n"));
        var responses = RawHttp.Responses(RawHttp.ReadUntilClose(socket, RawHttp.Deadline).Bytes);
        Assert.That(responses.Select(r => r.Status), Is.EqualTo(new[] { 404 }));
        Assert.That(RawHttp.Header(responses[0].Headers, "Connection"), Is.EqualTo("close"));
    }

    /// <summary>A download that moves is never cut, however long it takes: here it outlasts the keep-alive, header
    /// and send timeouts together (its head arrived in two reads, which used to start the header timeout's clock on
    /// the response too). nginx's send_timeout is measured between two writes the same way.</summary>
    [Test]
    public void ADownloadThatKeepsMovingOutlastsEveryTimeout()
    {
        using var server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root,
            new HttpServerOptions { ThreadCount = 1, HeaderTimeout = TimeSpan.FromSeconds(1), KeepAliveTimeout = TimeSpan.FromSeconds(1), SendTimeout = TimeSpan.FromSeconds(1) }, backend);
        using var socket = Connect(server);
        socket.Send(Encoding.ASCII.GetBytes("GET /big.bin HTTP/1.1\r\nHo"));
        Thread.Sleep(300);
        socket.Send(Encoding.ASCII.GetBytes("st: t\r\nConnection: close\r\n\r\n"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // 8 MiB in 256 KiB steps 100 ms apart: about 3.2 s, three times every timeout, each gap a tenth of one.
        var (bytes, closeAfterLastByte, reset) = RawHttp.ReadUntilClose(socket, RawHttp.Deadline, pauseEveryBytes: 256 * 1024, pause: TimeSpan.FromMilliseconds(100));
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromSeconds(2.5)), "the reader was not slow: the test shows nothing");
        var (status, _, body) = RawHttp.Split(bytes);
        Assert.That(status, Is.EqualTo(200));
        Assert.That(reset, Is.False);
        Assert.That(body, Has.Length.EqualTo(BigLength), "the download was cut while it moved");
        Assert.That(closeAfterLastByte, Is.LessThan(TimeSpan.FromSeconds(1)));
    }

    /// <summary>A reader that stops taking the response is cut once the send timeout passes without progress (not
    /// after the 30 s keep-alive timeout, nor never).</summary>
    [Test]
    public void AReaderThatStopsIsCutAfterTheSendTimeout()
    {
        using var socket = Connect(_files);
        socket.Send(Encoding.ASCII.GetBytes("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
        var first = new byte[16 * 1024];
        Assert.That(socket.Receive(first), Is.GreaterThan(0));
        Thread.Sleep(Send + TimeSpan.FromSeconds(1.5)); // stop reading: the server's socket is full all this time
        var (bytes, _, _) = RawHttp.ReadUntilClose(socket, TimeSpan.FromSeconds(5));
        Assert.That(first.Length + bytes.Length, Is.LessThan(BigLength), "the stalled response was not cut");
    }

    /// <summary>A connection that sends nothing is closed after the header timeout, without an answer (nginx's
    /// client_header_timeout covers the first byte too); it was held for the keep-alive timeout.</summary>
    [Test]
    public void ANewConnectionThatSendsNothingIsClosedAfterTheHeaderTimeout()
    {
        using var socket = Connect(_files);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (bytes, _, _) = RawHttp.ReadUntilClose(socket, TimeSpan.FromSeconds(8));
        Assert.That(bytes, Is.Empty, "nothing is answered to a connection that asked nothing");
        Assert.That(clock.Elapsed, Is.GreaterThan(Header * 0.7).And.LessThan(Header + TimeSpan.FromSeconds(2)));
    }

    /// <summary>A head trickled a byte a time is parsed once per line that can change the answer, not once per
    /// read (that was O(n²) CPU in the head's length): 4 KiB in single bytes, a few parses.</summary>
    [Test]
    public void AHeadTrickledAByteAtATimeIsNotReparsedPerByte()
    {
        using var socket = Connect(_files);
        socket.NoDelay = true;
        var head = Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Padding: " + new string('p', 1000) + "\r\nConnection: close\r\n\r\n");
        long before = _files.HeadParses;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int reads = 0;
        foreach (var b in head)
        {
            socket.Send([b]);
            if (++reads % 64 == 0)
                Thread.Sleep(1); // let the server read most bytes on their own
            Assert.That(clock.Elapsed, Is.LessThan(Header * 0.8), "the trickle took longer than the header timeout: the test shows nothing");
        }
        var (status, _, body) = RawHttp.Split(RawHttp.ReadUntilClose(socket, RawHttp.Deadline).Bytes);
        Assert.That(status, Is.EqualTo(200));
        Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo("alpha"));
        Assert.That(_files.HeadParses - before, Is.LessThanOrEqualTo(3), "parses for one trickled head (request line, end of head)");
    }

    /// <summary>A server that takes request content up to 16 MiB does not hold 16 MiB per connection: the room is
    /// taken for a request whose content needs it and given back after. Content still arrives whole, and a
    /// request pipelined behind it is answered.</summary>
    [Test]
    public void RoomForRequestContentIsTakenPerRequestNotPerConnection()
    {
        var idle = new List<Socket>();
        try
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < 40; i++)
                idle.Add(Connect(_handler));
            using (var probe = Connect(_handler)) // every connection above is accepted once this one is answered
            {
                probe.Send(Encoding.ASCII.GetBytes("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
                RawHttp.ReadUntilClose(probe, RawHttp.Deadline);
            }
            long perConnection = (GC.GetTotalAllocatedBytes(precise: true) - before) / 41;
            Assert.That(perConnection, Is.LessThan(256 * 1024), "bytes allocated per idle connection");
        }
        finally
        {
            foreach (var socket in idle)
                socket.Dispose();
        }
        using var poster = Connect(_handler);
        var content = new byte[3 << 20];
        poster.Send(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {content.Length}\r\n\r\n"));
        poster.Send(content);
        poster.Send(Encoding.ASCII.GetBytes("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        var responses = RawHttp.ReadUntilClose(poster, RawHttp.Deadline).Bytes;
        var text = Encoding.ASCII.GetString(responses);
        Assert.That(RawHttp.Responses(responses).Select(r => r.Status), Is.EqualTo(new[] { 200, 200 }));
        Assert.That(text, Does.Contain($"\r\n\r\n{content.Length}HTTP/1.1 200"), "the content arrived whole, then the pipelined request was answered");
        Assert.That(text, Does.EndWith("\r\n\r\n0"));
    }
}
