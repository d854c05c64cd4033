using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using IoMux.Web.Http;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Tests.Web;

/// <summary>A server programmed with <see cref="HttpServer.Create"/>, end to end on loopback and on every backend
/// that runs here: what a handler sees of the request, each kind of body it can answer with (bytes, a file range,
/// a source under back-pressure, chunked or delimited by the close), and what happens when it fails.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[NonParallelizable]
public sealed class HttpHandlerTests(string backend)
{
    private const int BodyLimit = 64 * 1024;
    private HttpServer _server = null!;
    private string _file = null!;
    private byte[] _fileBytes = null!, _large = null!;
    private readonly List<SafeFileHandle> _sentFiles = [];
    private volatile int _sourceCalls;
    private RequestView? _leaked;

    [OneTimeSetUp]
    public void Start()
    {
        _fileBytes = new byte[300_000];
        new Random(5).NextBytes(_fileBytes);
        _large = new byte[100_000];
        new Random(6).NextBytes(_large);
        _file = Path.Combine(Directory.CreateTempSubdirectory("iomux-handler-").FullName, "data.bin");
        File.WriteAllBytes(_file, _fileBytes);
        _server = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), Handle,
            new HttpServerOptions { ThreadCount = 2, MaxRequestBodySize = BodyLimit, KeepAliveTimeout = TimeSpan.FromSeconds(5) }, backend);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _server.Dispose();
        Directory.Delete(Path.GetDirectoryName(_file)!, recursive: true);
    }

    /// <summary>The handler under test: the path picks what it does.</summary>
    private void Handle(RequestView request, ResponseBuilder response)
    {
        switch (Encoding.ASCII.GetString(request.Path))
        {
            case "/echo":
                response.Status = 201;
                response.AddHeader("X-Method", Encoding.ASCII.GetString(request.Method));
                response.AddHeader("X-Query", Encoding.ASCII.GetString(request.Query));
                response.AddHeader("X-Agent", request.GetHeader("user-agent") ?? "none");
                response.AddHeader("Content-Type"u8, "application/octet-stream"u8);
                response.Send(request.Body);
                break;
            case "/text":
                response.Send($"héllo {request.DecodedPath()} {request.Version}");
                break;
            case "/large":
                response.Send(_large);
                break;
            case "/file":
                var handle = File.OpenHandle(_file);
                lock (_sentFiles)
                    _sentFiles.Add(handle);
                response.SendFile(handle, 1000, 200_000);
                break;
            case "/counted":
                response.SendBody(CountingSource(3_000_000), 3_000_000);
                break;
            case "/counted-large":
                response.SendBody(CountingSource(32 << 20), 32 << 20);
                break;
            case "/chunked":
                response.SendBody(CountingSource(50_000));
                break;
            case "/endless":
                response.SendBody(CountingSource(long.MaxValue));
                break;
            case "/stream":
                response.SendStream(new MemoryStream(_large));
                break;
            case "/short":
                response.SendBody(CountingSource(10), 20); // announces 20, produces 10
                break;
            case "/nocontent":
                response.Status = 204;
                response.Send("ignored"u8);
                break;
            case "/silent":
                response.Status = 202;
                break;
            case "/throw":
                throw new InvalidOperationException("handler failure");
            case "/throw-after":
                response.Send("sent"u8);
                throw new InvalidOperationException("after the head");
            case "/bad-header":
                try
                {
                    response.AddHeader("X-Split", "a\r\nSet-Cookie: evil=1");
                    response.Send("accepted"u8);
                }
                catch (ArgumentException)
                {
                    response.Status = 500;
                    response.Send("refused"u8);
                }
                break;
            case "/reserved-header":
                try
                {
                    response.AddHeader("Content-Length", "5");
                    response.Send("accepted"u8);
                }
                catch (ArgumentException)
                {
                    response.Send("refused"u8);
                }
                break;
            case "/leak":
                _leaked = request;
                response.Send("ok"u8);
                break;
            default:
                response.Status = 404;
                response.Send("no such thing"u8);
                break;
        }
    }

    /// <summary>Bytes 0, 1, 2... (mod 251) up to <paramref name="length"/>, counting the calls.</summary>
    private HttpBodySource CountingSource(long length)
    {
        long produced = 0;
        return buffer =>
        {
            Interlocked.Increment(ref _sourceCalls);
            int n = (int)Math.Min(buffer.Length, length - produced);
            for (int i = 0; i < n; i++)
                buffer[i] = (byte)((produced + i) % 251);
            produced += n;
            return n;
        };
    }

    private static bool IsCounted(ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
            if (bytes[i] != (byte)(i % 251))
                return false;
        return true;
    }

    private (int Status, string Headers, byte[] Body) Exchange(string request) => RawHttp.Exchange(_server.Endpoint, request);

    [Test]
    public void TheHandlerSeesTheMethodTargetHeadersAndBody()
    {
        var (status, headers, body) = Exchange(
            "PUT /echo?a=1&b=2 HTTP/1.1\r\nHost: t\r\nUser-Agent: raw-test\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world");
        Assert.That(status, Is.EqualTo(201), headers);
        Assert.That(RawHttp.Header(headers, "X-Method"), Is.EqualTo("PUT"));
        Assert.That(RawHttp.Header(headers, "X-Query"), Is.EqualTo("a=1&b=2"));
        Assert.That(RawHttp.Header(headers, "X-Agent"), Is.EqualTo("raw-test"));
        Assert.That(RawHttp.Header(headers, "Content-Type"), Is.EqualTo("application/octet-stream"));
        Assert.That(RawHttp.Header(headers, "Content-Length"), Is.EqualTo("11"));
        Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo("hello world"));
    }

    [Test]
    public void ARequestBodyArrivingInPiecesIsHandedOverWhole()
    {
        var content = new byte[BodyLimit];
        new Random(3).NextBytes(content);
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.NoDelay = true;
        socket.Send(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {content.Length}\r\nConnection: close\r\n\r\n"));
        for (int offset = 0; offset < content.Length; offset += 16 * 1024) // bounded: four pieces
        {
            Thread.Sleep(20);
            socket.Send(content, offset, 16 * 1024, SocketFlags.None);
        }
        var answer = RawHttp.ReadToEnd(socket);
        int split = answer.AsSpan().IndexOf("\r\n\r\n"u8) + 4;
        Assert.That(Encoding.ASCII.GetString(answer, 0, 12), Is.EqualTo("HTTP/1.1 201"));
        Assert.That(answer[split..], Is.EqualTo(content));
    }

    /// <summary>RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" gets the interim 100 before it sends its
    /// content; content over the limit is refused at once instead.</summary>
    [Test]
    public void AClientExpectingContinueGets100ThenItsAnswer()
    {
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.Send(Encoding.ASCII.GetBytes("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"));
        var interim = new byte[25];
        int got = 0;
        while (got < interim.Length) // bounded by the receive timeout
        {
            int n = socket.Receive(interim, got, interim.Length - got, SocketFlags.None);
            Assert.That(n, Is.GreaterThan(0), "closed before the interim response");
            got += n;
        }
        Assert.That(Encoding.ASCII.GetString(interim), Is.EqualTo("HTTP/1.1 100 Continue\r\n\r\n"));
        socket.Send("hello"u8.ToArray());
        var answer = Encoding.ASCII.GetString(RawHttp.ReadToEnd(socket));
        Assert.That(answer, Does.StartWith("HTTP/1.1 201"));
        Assert.That(answer, Does.EndWith("\r\n\r\nhello"));

        var (status, _, _) = Exchange("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n");
        Assert.That(status, Is.EqualTo(413), "too large: refused without a 100");
    }

    [TestCase("Content-Length: 65537\r\n\r\n", 413)]
    [TestCase("Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 413)]
    public void ContentOverTheLimitOrChunkedIs413(string framing, int expected)
    {
        var (status, headers, _) = Exchange($"POST /echo HTTP/1.1\r\nHost: t\r\n{framing}");
        Assert.That(status, Is.EqualTo(expected));
        Assert.That(headers, Does.Contain("Connection: close"));
    }

    [Test]
    public void TextIsUtf8WithAContentType()
    {
        var (status, headers, body) = Exchange("GET /text HTTP/1.0\r\n\r\n");
        Assert.That(status, Is.EqualTo(200));
        Assert.That(RawHttp.Header(headers, "Content-Type"), Is.EqualTo("text/plain; charset=utf-8"));
        Assert.That(Encoding.UTF8.GetString(body), Is.EqualTo("héllo /text 10"));
        Assert.That(RawHttp.Header(headers, "Connection"), Is.EqualTo("close"));
    }

    [TestCase("/large")]
    [TestCase("/stream")]
    public void ABodyLargerThanTheHeadBufferArrivesIntact(string path)
    {
        var (status, headers, body) = Exchange($"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(status, Is.EqualTo(200));
        if (path == "/stream")
        {
            Assert.That(RawHttp.Header(headers, "Transfer-Encoding"), Is.EqualTo("chunked"), "a stream of unknown length goes chunked");
            body = RawHttp.Dechunk(body);
        }
        Assert.That(SHA256.HashData(body), Is.EqualTo(SHA256.HashData(_large)));
    }

    [Test, CancelAfter(30_000)]
    public async Task AFileRangeIsSentAndTheHandleClosedAfterwards(CancellationToken cancellation)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_server.Endpoint}/") };
        for (int i = 0; i < 3; i++)
        {
            var bytes = await http.GetByteArrayAsync("file", cancellation);
            Assert.That(SHA256.HashData(bytes), Is.EqualTo(SHA256.HashData(_fileBytes.AsSpan(1000, 200_000))));
        }
        lock (_sentFiles)
            Assert.That(_sentFiles.All(f => f.IsClosed), Is.True, "a handle given to SendFile is disposed once sent");
    }

    [Test, CancelAfter(30_000)]
    public async Task ASourceWithALengthAndAChunkedOneArriveIntact(CancellationToken cancellation)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_server.Endpoint}/") };
        using var counted = await http.GetAsync("counted", cancellation);
        Assert.That(counted.Content.Headers.ContentLength, Is.EqualTo(3_000_000));
        var bytes = await counted.Content.ReadAsByteArrayAsync(cancellation);
        Assert.That(bytes.Length, Is.EqualTo(3_000_000));
        Assert.That(IsCounted(bytes), Is.True);

        using var chunked = await http.GetAsync("chunked", cancellation);
        Assert.That(chunked.Headers.TransferEncodingChunked, Is.True);
        bytes = await chunked.Content.ReadAsByteArrayAsync(cancellation);
        Assert.That(bytes.Length, Is.EqualTo(50_000));
        Assert.That(IsCounted(bytes), Is.True);
    }

    [Test]
    public void ASourceOfUnknownLengthEndsWithTheConnectionForHttp10()
    {
        var (status, headers, body) = Exchange("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        Assert.That(status, Is.EqualTo(200));
        Assert.That(headers, Does.Not.Contain("Transfer-Encoding"), "HTTP/1.0 has no chunked coding");
        Assert.That(RawHttp.Header(headers, "Connection"), Is.EqualTo("close"));
        Assert.That(body.Length, Is.EqualTo(50_000));
        Assert.That(IsCounted(body), Is.True);
    }

    /// <summary>Back-pressure: while the client reads nothing, the source is asked for no more than the socket
    /// buffers hold; once the client reads, the rest comes.</summary>
    [Test]
    public void ASourceIsNotCalledWhileTheClientDoesNotRead()
    {
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.ReceiveBufferSize = 64 * 1024;
        _sourceCalls = 0;
        socket.Send(Encoding.ASCII.GetBytes("GET /endless HTTP/1.1\r\nHost: t\r\n\r\n"));
        Thread.Sleep(500);
        int callsAtRest = _sourceCalls;
        Thread.Sleep(500);
        Assert.That(_sourceCalls, Is.EqualTo(callsAtRest), "the source was called while the socket stayed full");
        Assert.That((long)callsAtRest * 4096, Is.LessThan(32L << 20), "more was produced than the socket buffers can hold");
        var buffer = new byte[256 * 1024];
        long received = 0;
        while (received < 64L << 20) // bounded: 64 MiB, each Receive bounded by the receive timeout, a close fails
        {
            int n = socket.Receive(buffer);
            Assert.That(n, Is.GreaterThan(0), "the endless response ended");
            received += n;
        }
        Assert.That(_sourceCalls, Is.GreaterThan(callsAtRest), "reading let the source go on");
    }

    [Test]
    public void ASourceShorterThanItsLengthClosesTheConnection()
    {
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.Send(Encoding.ASCII.GetBytes("GET /short HTTP/1.1\r\nHost: t\r\n\r\n"));
        var answer = RawHttp.ReadToEnd(socket); // ends: the server closed rather than leave the client waiting
        int split = answer.AsSpan().IndexOf("\r\n\r\n"u8) + 4;
        Assert.That(answer.Length - split, Is.EqualTo(10));
    }

    [Test]
    public void HeadGetsTheHeadersWithoutTheBody()
    {
        var (status, headers, body) = Exchange("HEAD /large HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(status, Is.EqualTo(200));
        Assert.That(RawHttp.Header(headers, "Content-Length"), Is.EqualTo(_large.Length.ToString()));
        Assert.That(body, Is.Empty);
    }

    [Test]
    public void A204HasNoBodyNorLengthAndTheConnectionStaysInStep()
    {
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.Send(Encoding.ASCII.GetBytes("GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\nGET /silent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        var all = Encoding.ASCII.GetString(RawHttp.ReadToEnd(socket));
        Assert.That(all, Does.StartWith("HTTP/1.1 204 No Content\r\n"));
        int second = all.IndexOf("HTTP/1.1 202 Accepted", StringComparison.Ordinal);
        Assert.That(second, Is.GreaterThan(0), all);
        Assert.That(all[..second], Does.Not.Contain("Content-Length").And.Not.Contain("ignored"));
        Assert.That(all[second..], Does.Contain("Content-Length: 0"), "a handler that sends nothing answers its status, empty");
    }

    [Test]
    public void AHandlerThatThrowsBeforeSendingIsAnswered500AndClosed()
    {
        var (status, headers, _) = Exchange("GET /throw HTTP/1.1\r\nHost: t\r\n\r\n"); // no "close" asked: the server closes
        Assert.That(status, Is.EqualTo(500));
        Assert.That(headers, Does.Contain("Connection: close"));
    }

    [Test]
    public void AHandlerThatThrowsAfterSendingDeliversItsResponseAndCloses()
    {
        var (status, _, body) = Exchange("GET /throw-after HTTP/1.1\r\nHost: t\r\n\r\n");
        Assert.That(status, Is.EqualTo(200));
        Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo("sent"));
    }

    [TestCase("/bad-header", "refused")]
    [TestCase("/reserved-header", "refused")]
    public void HeaderFieldsThatWouldSplitOrReframeTheResponseAreRefused(string path, string expected)
    {
        var (_, headers, body) = Exchange($"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo(expected));
        Assert.That(headers, Does.Not.Contain("evil"));
    }

    [Test]
    public void ARequestCannotBeReadAfterItsHandlerReturned()
    {
        Exchange("GET /leak HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(_leaked, Is.Not.Null);
        Assert.Throws<InvalidOperationException>(() => _ = _leaked!.Target.Length);
    }

    [Test]
    public void PipelinedRequestsWithBodiesAreAnsweredInOrder()
    {
        using var socket = RawHttp.Connect(_server.Endpoint);
        socket.Send(Encoding.ASCII.GetBytes(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirstPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond"));
        var all = Encoding.ASCII.GetString(RawHttp.ReadToEnd(socket));
        Assert.That(all.IndexOf("\r\n\r\nfirst", StringComparison.Ordinal), Is.GreaterThan(0), all);
        Assert.That(all, Does.EndWith("\r\n\r\nsecond"));
    }

    /// <summary>A request pipelined behind a response that fills the socket is answered once that response is out,
    /// without waiting for more bytes from the client (it used to wait for the keep-alive timeout).</summary>
    [Test] // every read bounded: the receive timeout, and RawHttp's deadline for the whole exchange
    public void ARequestPipelinedBehindALongResponseIsAnsweredWhenItEnds()
    {
        // 32 MiB to a client with a small receive buffer: more than the socket buffers on both sides can hold.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 15_000, ReceiveBufferSize = 16 * 1024 };
        socket.Connect(_server.Endpoint);
        socket.Send(Encoding.ASCII.GetBytes("GET /counted-large HTTP/1.1\r\nHost: t\r\n\r\nGET /text HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        Thread.Sleep(200); // the first response fills the socket before anything is read
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var all = RawHttp.ReadToEnd(socket);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4)), "the second request waited for the keep-alive timeout");
        Assert.That(Encoding.UTF8.GetString(all.AsSpan(all.Length - 200)), Does.EndWith("héllo /text 11"));
    }

    [Test]
    public void MalformedRequestsNeverReachTheHandler()
    {
        var (status, _, body) = Exchange("GET /echo HTTP/1.1\r\n\r\n"); // HTTP/1.1 without Host
        Assert.That(status, Is.EqualTo(400));
        Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo("Bad Request\n"));
    }
}
