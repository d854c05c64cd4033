using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The static file server end to end on loopback, on every backend that runs here: what it serves,
/// what it refuses (and with which status), keep-alive, pipelining, and its timeouts.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[NonParallelizable]
public sealed class HttpServerTests(string backend)
{
    private string _root = null!, _outside = null!;
    private HttpServer _server = null!;
    private byte[] _big = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _root = Directory.CreateTempSubdirectory("iomux-www-").FullName;
        _outside = Directory.CreateTempSubdirectory("iomux-outside-").FullName;
        File.WriteAllText(Path.Combine(_root, "index.html"), "<h1>home</h1>");
        File.WriteAllText(Path.Combine(_root, "a.txt"), "alpha");
        Directory.CreateDirectory(Path.Combine(_root, "sub"));
        File.WriteAllText(Path.Combine(_root, "sub", "index.html"), "sub index");
        _big = new byte[1 << 20];
        new Random(9).NextBytes(_big);
        File.WriteAllBytes(Path.Combine(_root, "big.bin"), _big);
        File.WriteAllText(Path.Combine(_outside, "secret.txt"), "secret");
        File.CreateSymbolicLink(Path.Combine(_root, "leak.txt"), Path.Combine(_outside, "secret.txt"));
        File.CreateSymbolicLink(Path.Combine(_root, "alias.txt"), Path.Combine(_root, "a.txt"));
        Directory.CreateSymbolicLink(Path.Combine(_root, "outdir"), _outside);
        File.CreateSymbolicLink(Path.Combine(_root, "relative-leak.txt"), Path.Combine("..", Path.GetFileName(_outside), "secret.txt"));
        File.CreateSymbolicLink(Path.Combine(_root, "sub", "relative-alias.txt"), Path.Combine("..", "a.txt"));
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", Path.Combine(_root, "fifo"))!)
            mkfifo.WaitForExit();
        _server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root,
            new HttpServerOptions { Threads = 2, HeaderTimeout = TimeSpan.FromSeconds(1), KeepAliveTimeout = TimeSpan.FromSeconds(2) }, backend);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _server.Dispose();
        Directory.Delete(_root, recursive: true);
        Directory.Delete(_outside, recursive: true);
    }

    [TestCase("/a.txt", 200, "alpha")]
    [TestCase("/", 200, "<h1>home</h1>")]
    [TestCase("/sub/", 200, "sub index")]
    [TestCase("/sub", 200, "sub index")]
    [TestCase("/alias.txt", 200, "alpha")]
    [TestCase("/a.txt?x=1", 200, "alpha")]
    [TestCase("/%61.txt", 200, "alpha")]
    [TestCase("/sub/../a.txt", 200, "alpha")]
    [TestCase("/sub/relative-alias.txt", 200, "alpha")]
    [TestCase("/missing", 404, null)]
    [TestCase("/relative-leak.txt", 404, null)]
    [TestCase("/fifo", 404, null)]
    [TestCase("/leak.txt", 404, null)]
    [TestCase("/outdir/secret.txt", 404, null)]
    [TestCase("/../etc/passwd", 400, null)]
    [TestCase("/%2e%2e/%2e%2e/etc/passwd", 400, null)]
    [TestCase("/sub/%2E%2E/%2E%2E/etc/passwd", 400, null)]
    [TestCase("/..%2fetc%2fpasswd", 400, null)]
    [TestCase("/a.txt%00.html", 400, null)]
    [TestCase("/%zz", 400, null)]
    public void GetAnswers(string target, int status, string? body)
    {
        var (code, headers, content) = Exchange($"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(status), headers);
        if (body is not null)
            Assert.That(Encoding.UTF8.GetString(content), Is.EqualTo(body));
        Assert.That(Encoding.UTF8.GetString(content), Does.Not.Contain("secret"));
    }

    [Test]
    public void HeadSendsTheHeadersOfGetWithoutTheBody()
    {
        var (code, headers, content) = Exchange("HEAD /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(200));
        Assert.That(headers, Does.Contain($"Content-Length: {_big.Length}"));
        Assert.That(content, Is.Empty);
    }

    [Test]
    public void OtherMethodsGet405WithAllow()
    {
        var (code, headers, _) = Exchange("DELETE /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(405));
        Assert.That(headers, Does.Contain("Allow: GET, HEAD"));
    }

    [TestCase("GARBAGE\r\n\r\n", 400)]
    [TestCase("GET /a.txt\r\n\r\n", 400)]
    [TestCase("GET a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/1.1\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost : t\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n", 505)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 413)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 413)]
    public void MalformedRequestsGetTheirStatusAndTheConnectionCloses(string request, int status)
    {
        var (code, headers, _) = Exchange(request);
        Assert.That(code, Is.EqualTo(status));
        Assert.That(headers, Does.Contain("Connection: close"));
    }

    [Test]
    public void OversizedHeadersGet431AndAnOversizedRequestLine414()
    {
        var header = new string('x', 20_000);
        Assert.That(Exchange($"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Big: {header}\r\n\r\n").Status, Is.EqualTo(431));
        Assert.That(Exchange($"GET /{header} HTTP/1.1\r\nHost: t\r\n\r\n").Status, Is.EqualTo(414));
    }

    [Test, CancelAfter(30_000)]
    public async Task AMebibyteFileArrivesIntactOverKeepAlive()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_server.Endpoint}/") };
        for (int i = 0; i < 3; i++)
        {
            var bytes = await http.GetByteArrayAsync("big.bin");
            Assert.That(SHA256.HashData(bytes), Is.EqualTo(SHA256.HashData(_big)));
        }
    }

    [Test]
    public void PipelinedRequestsAreAnsweredInOrder()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        var all = Encoding.UTF8.GetString(ReadToEnd(socket));
        int first = all.IndexOf("alpha", StringComparison.Ordinal), second = all.IndexOf("sub index", StringComparison.Ordinal);
        Assert.That(first, Is.GreaterThan(0));
        Assert.That(second, Is.GreaterThan(first));
    }

    [Test, CancelAfter(30_000)]
    public void ASlowHeadIsAnswered408AfterTheHeaderTimeout()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHo")); // and nothing more: slowloris
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var response = Encoding.ASCII.GetString(ReadToEnd(socket));
        Assert.That(response, Does.StartWith("HTTP/1.1 408"));
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(700)).And.LessThan(TimeSpan.FromSeconds(10)));
    }

    [Test, CancelAfter(30_000)]
    public void AnIdleKeptAliveConnectionIsClosedAfterTheIdleTimeout()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        var buffer = new byte[4096];
        Assert.That(socket.Receive(buffer), Is.GreaterThan(0));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        socket.ReceiveTimeout = 10_000;
        Assert.That(socket.Receive(buffer), Is.EqualTo(0), "the idle connection was not closed");
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromSeconds(1.5)));
    }

    private Socket Connect()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 15_000 };
        socket.Connect(_server.Endpoint);
        return socket;
    }

    private static byte[] ReadToEnd(Socket socket)
    {
        using var output = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
            output.Write(buffer, 0, n);
        return output.ToArray();
    }

    private (int Status, string Headers, byte[] Body) Exchange(string request)
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes(request));
        var response = ReadToEnd(socket);
        int split = response.AsSpan().IndexOf("\r\n\r\n"u8);
        Assert.That(split, Is.GreaterThan(0), $"no response head: {Encoding.ASCII.GetString(response)}");
        var headers = Encoding.ASCII.GetString(response, 0, split);
        return (int.Parse(headers.AsSpan(9, 3)), headers, response[(split + 4)..]);
    }
}
