// docs/SERVERS.md quotes this file: a server programmed with a handler on IoMux.Web.
//   dotnet run --project samples/HttpHandler [port]
//   curl 'localhost:8080/hello?name=you'; curl -d 'some text' localhost:8080/echo; curl localhost:8080/count
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Web.Http;

int port = args.Length > 0 ? int.Parse(args[0]) : 8080;
var options = new HttpServerOptions { MaxRequestBodySize = 64 * 1024 }; // POST bodies up to 64 KiB, handed over whole

using var server = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, port), Handle, options);
Console.WriteLine($"listening on http://{server.Endpoint}/");

using var stop = new ManualResetEventSlim();
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
stop.Wait();

// Runs on a loop thread: it must not block. The request's spans are valid until it returns.
static void Handle(RequestView request, ResponseBuilder response)
{
    if (request.Path.SequenceEqual("/hello"u8))
    {
        string name = request.Query.StartsWith("name="u8) ? Uri.UnescapeDataString(Encoding.UTF8.GetString(request.Query[5..])) : "world";
        response.Send($"Hello, {name}!\n");                         // text/plain; charset=utf-8
    }
    else if (request.Path.SequenceEqual("/echo"u8) && request.Method.SequenceEqual("POST"u8))
    {
        response.AddHeader("Content-Type", request.GetHeader("Content-Type") ?? "application/octet-stream");
        response.Send(request.Body);                                // copied: the request buffer is reused
    }
    else if (request.Path.SequenceEqual("/count"u8))
    {
        int next = 0;
        response.SendBody(buffer =>                                 // called each time the socket has room
        {
            if (next == 100_000)
                return 0;                                           // the end of the body
            int written = 0;
            while (next < 100_000 && written + 8 <= buffer.Length)
                written += Encoding.ASCII.GetBytes($"{next++,7}\n", buffer[written..]);
            return written;
        });                                                         // no length: chunked (HTTP/1.1)
    }
    else if (request.Path.SequenceEqual("/source"u8))
    {
        var file = File.OpenHandle(Environment.ProcessPath!);       // any file: sent with sendfile, closed when sent
        response.AddHeader("Content-Type", "application/octet-stream");
        response.SendFile(file, offset: 0, count: RandomAccess.GetLength(file));
    }
    else
    {
        response.Status = 404;
        response.Send("no such page\n");
    }
}
